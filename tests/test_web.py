"""The pages over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import httpx
import pytest
from markupsafe import escape
from sqlmodel import Session, col, select

from app.demo import DEMO_ACCOUNTS
from app.models import AuditRecord, ItemData
from tests.conftest import InProcessServer, csrf_token, logged_in_client

FORM = "/subjects/{id}/events/SE.SCR/1/forms/{form}/1"


def register(client: httpx.Client, site_id: int = 1) -> int:
    token = csrf_token(client, "/subjects")
    response = client.post("/subjects", data={"site_id": str(site_id), "csrftoken": token})
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def save(
    client: httpx.Client,
    subject_id: int,
    form: str,
    fields: dict[str, str],
    *,
    version: int,
    action: str = "save",
    reason: str = "",
) -> httpx.Response:
    path = FORM.format(id=subject_id, form=form)
    token = csrf_token(client, path)
    data = {"csrftoken": token, "_version": str(version), "_action": action, **fields}
    if reason:
        data["_reason"] = reason
    return client.post(path, data=data)


def complete_consent(client: httpx.Client, subject_id: int, date: str) -> httpx.Response:
    """Save the Informed Consent form as complete, signed on `date`."""
    fields = {"IG.IC:1:ICVER": "2.0", "IG.IC:1:ICDAT": date, "IG.IC:1:ICLTFU": "Y"}
    return save(client, subject_id, "F.IC", fields, version=0, action="complete")


def test_every_demo_account_logs_in_and_a_wrong_password_is_refused(
    app_server: InProcessServer,
) -> None:
    for username, _name, _what in DEMO_ACCOUNTS:
        client = logged_in_client(app_server, username)
        # the administrator administers; everyone else sees subjects
        assert client.get("/subjects").status_code == (403 if username == "admin" else 200)
    client = app_server.client()
    token = csrf_token(client)
    response = client.post(
        "/login", data={"username": "coordinator", "password": "nope-123456", "csrftoken": token}
    )
    assert response.status_code == 401
    assert "Unknown username or wrong password." in response.text


def test_session_cookie_is_httponly_and_samesite(app_server: InProcessServer) -> None:
    client = app_server.client()
    token = csrf_token(client)
    from app.demo import DEMO_PASSWORD

    response = client.post(
        "/login", data={"username": "coordinator", "password": DEMO_PASSWORD, "csrftoken": token}
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_a_forged_post_without_the_csrf_token_is_refused(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    response = client.post("/subjects", data={"site_id": "1"})
    assert response.status_code == 403
    assert "No subjects yet." in client.get("/subjects").text


def test_screening_numbers_are_site_prefixed_and_other_sites_are_invisible(
    app_server: InProcessServer,
) -> None:
    site1 = logged_in_client(app_server, "coordinator")
    site2 = logged_in_client(app_server, "coordinator2")
    first = register(site1, site_id=1)
    other = register(site2, site_id=2)
    page = site1.get(f"/subjects/{first}")
    assert "Subject 01-001" in page.text
    assert "Subject 02-001" in site2.get(f"/subjects/{other}").text
    listing = site1.get("/subjects").text
    assert "01-001" in listing and "02-001" not in listing
    hidden = site1.get(f"/subjects/{other}")
    missing = site1.get("/subjects/999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    assert site1.get(FORM.format(id=other, form="F.DM")).status_code == 404
    forged = save(site1, other, "F.DM", {"IG.DM:1:SEX": "F"}, version=0)
    assert forged.status_code == 404


def test_registering_at_another_site_is_forbidden(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    token = csrf_token(client, "/subjects")
    response = client.post("/subjects", data={"site_id": "2", "csrftoken": token})
    assert response.status_code == 403


def test_bad_values_are_shown_next_to_their_field_and_nothing_is_stored(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    engine = live_server_engine(app_server)
    with Session(engine) as session:
        audits_before = len(session.exec(select(AuditRecord)).all())
    response = save(
        client,
        subject,
        "F.DM",
        {
            "IG.DM:1:BRTHDAT": "1985-02-30",
            "IG.DM:1:SEX": "Q",
            "IG.DM:1:RACE": "ASIAN",
            "IG.DM:1:ETHNIC": "<script>alert(1)</script>",
        },
        version=0,
    )
    assert response.status_code == 422
    assert "1985-02-30 is not a real calendar date" in response.text
    assert "is not one of the allowed answers" in response.text
    assert 'value="1985-02-30"' in response.text  # what was typed is kept
    assert "<script>alert(1)</script>" not in response.text
    with Session(engine) as session:
        assert len(session.exec(select(AuditRecord)).all()) == audits_before
        assert session.exec(select(ItemData)).all() == []


def live_server_engine(server: InProcessServer):  # type: ignore[no-untyped-def]
    from app.db import make_engine

    return make_engine(server.settings.database_url)


def test_saved_values_are_audited_with_who_when_old_and_new(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    assert complete_consent(client, subject, "2026-03-10").status_code == 303
    response = save(
        client, subject, "F.DM", {"IG.DM:1:BRTHDAT": "1980-03-11", "IG.DM:1:SEX": "M"}, version=0
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "Saved." in page
    age = re.search(r'<output id="f-IG_DM-1-AGE"[^>]*>([^<]*)</output>', page)
    assert age is not None and age.group(1) == "45"
    response = save(
        client, subject, "F.DM", {"IG.DM:1:BRTHDAT": "1980-03-09", "IG.DM:1:SEX": "M"}, version=1
    )
    assert response.status_code == 303
    with Session(live_server_engine(app_server)) as session:
        trail = session.exec(
            select(AuditRecord)
            .where(AuditRecord.item_oid == "IT.DM.AGE")
            .order_by(col(AuditRecord.id))
        ).all()
    assert [(r.old_value, r.new_value, r.username) for r in trail] == [
        (None, "45", "coordinator"),
        ("45", "46", "coordinator"),
    ]
    assert all(r.occurred_at.tzinfo is not None for r in trail)


def test_a_stale_save_gets_a_conflict_and_changes_nothing(app_server: InProcessServer) -> None:
    first = logged_in_client(app_server, "coordinator")
    second = logged_in_client(app_server, "investigator")
    subject = register(first)
    assert save(first, subject, "F.DM", {"IG.DM:1:SEX": "F"}, version=0).status_code == 303
    stale = save(second, subject, "F.DM", {"IG.DM:1:SEX": "M"}, version=0)
    assert stale.status_code == 409
    assert "Someone else saved this form after you opened it" in stale.text
    assert "Female" in first.get(FORM.format(id=subject, form="F.DM")).text.split("checked")[1][:80]


@pytest.mark.parametrize("path", ["/subjects", "/subjects/1"])
def test_pages_need_a_login(app_server: InProcessServer, path: str) -> None:
    response = app_server.client().get(path)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_lab_form_shows_one_row_per_preset_test(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    page = client.get(FORM.format(id=subject, form="F.LBHEM")).text
    assert '<span class="preset">WBC</span>' in page
    assert '<span class="preset">Platelets</span>' in page
    assert ">None<" not in page


def test_html_typed_into_a_text_item_is_stored_as_typed_and_shown_escaped(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    typed = "<b>2.0</b> &amp; <img src=x>"
    response = save(client, subject, "F.IC", {"IG.IC:1:ICVER": typed[:20]}, version=0)
    assert response.status_code == 303
    page = client.get(FORM.format(id=subject, form="F.IC")).text
    assert f'value="{escape(typed[:20])}"' in page
    assert "<img src=x" not in page
    with Session(live_server_engine(app_server)) as session:
        stored = session.exec(
            select(ItemData.value).where(ItemData.item_oid == "IT.IC.ICVER")
        ).one()
    assert stored == typed[:20]


def test_logging_out_ends_the_session(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    cookie = client.cookies.get("trialdesk_session")
    token = csrf_token(client, "/subjects")
    assert client.post("/logout", data={"csrftoken": token}).status_code == 303
    replay_client = app_server.client()
    replay_client.cookies.set("trialdesk_session", cookie or "")
    replay = replay_client.get("/subjects")
    assert replay.status_code == 303 and replay.headers["location"] == "/login"

"""The JSON API over real HTTP with personal API tokens, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.conftest import InProcessServer, LiveServer, csrf_token, logged_in_client

DM = "/api/v1/studies/ZM001/subjects/{id}/events/SE.SCR/1/forms/F.DM/1"
IC = "/api/v1/studies/ZM001/subjects/{id}/events/SE.SCR/1/forms/F.IC/1"


def api_client(server: InProcessServer, username: str) -> httpx.Client:
    """A client authenticated by a token the user created on the tokens page."""
    browser = logged_in_client(server, username)
    token = csrf_token(browser, "/account/tokens")
    page = browser.post("/account/tokens", data={"name": "tests", "csrftoken": token}).text
    secret = re.search(r'<code id="new-token">([^<]+)</code>', page)
    assert secret is not None
    return server.client(headers={"Authorization": f"Bearer {secret.group(1)}"}, timeout=30)


def new_subject(client: httpx.Client, site_id: int = 1) -> int:
    response = client.post("/api/v1/studies/ZM001/subjects", json={"site_id": site_id})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_requests_without_a_token_get_a_json_401(app_server: InProcessServer) -> None:
    response = app_server.client().get("/api/v1/studies/ZM001/subjects")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    bad = app_server.client(headers={"Authorization": "Bearer td_x"}).get(
        "/api/v1/studies/ZM001/subjects"
    )
    assert bad.status_code == 401


def test_a_revoked_token_stops_working(app_server: InProcessServer) -> None:
    browser = logged_in_client(app_server, "coordinator")
    token = csrf_token(browser, "/account/tokens")
    page = browser.post("/account/tokens", data={"name": "once", "csrftoken": token}).text
    secret = re.search(r'<code id="new-token">([^<]+)</code>', page).group(1)  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {secret}"}
    assert (
        app_server.client().get("/api/v1/studies/ZM001/subjects", headers=headers).status_code
        == 200
    )
    token_id = re.search(r"/account/tokens/(\d+)/revoke", page).group(1)  # type: ignore[union-attr]
    revoked = browser.post(f"/account/tokens/{token_id}/revoke", data={"csrftoken": token})
    assert revoked.status_code == 303
    assert (
        app_server.client().get("/api/v1/studies/ZM001/subjects", headers=headers).status_code
        == 401
    )
    assert "revoked" in browser.get("/account/tokens").text


def test_subjects_and_forms_follow_the_site_rules(app_server: InProcessServer) -> None:
    site1 = api_client(app_server, "coordinator")
    site2 = api_client(app_server, "coordinator2")
    mine = new_subject(site1)
    theirs = new_subject(site2, site_id=2)
    keys = [s["subject_key"] for s in site1.get("/api/v1/studies/ZM001/subjects").json()]
    assert keys == ["01-001"]
    hidden = site1.get(f"/api/v1/studies/ZM001/subjects/{theirs}")
    missing = site1.get("/api/v1/studies/ZM001/subjects/987654")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert site1.get(DM.format(id=theirs)).status_code == 404
    forged = site1.put(DM.format(id=theirs), json={"version": 0, "values": {}})
    assert forged.status_code == 404
    assert site1.post("/api/v1/studies/ZM001/subjects", json={"site_id": 2}).status_code == 403
    casebook = site1.get(f"/api/v1/studies/ZM001/subjects/{mine}").json()
    assert casebook["visits"][0]["event_oid"] == "SE.SCR"
    sponsor = api_client(app_server, "sponsor")
    assert {s["subject_key"] for s in sponsor.get("/api/v1/studies/ZM001/subjects").json()} == {
        "01-001",
        "02-001",
    }
    assert sponsor.put(DM.format(id=mine), json={"version": 0, "values": {}}).status_code == 403


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        (
            {"IG.DM": {"1": {"BRTHDAT": "1980-02-30"}}},
            "IG.DM:1:BRTHDAT",
            "not a real calendar date",
        ),
        (
            {"IG.DM": {"1": {"BRTHDAT": "1980-05"}}},
            "IG.DM:1:BRTHDAT",
            "partial date is not allowed",
        ),
        ({"IG.DM": {"1": {"SEX": "X"}}}, "IG.DM:1:SEX", "not one of the allowed answers"),
    ],
)
def test_bad_values_are_refused_per_field_and_nothing_changes(
    app_server: InProcessServer, values: dict[str, object], field: str, message: str
) -> None:
    client = api_client(app_server, "coordinator")
    subject = new_subject(client)
    response = client.put(DM.format(id=subject), json={"version": 0, "values": values})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert client.get(DM.format(id=subject)).json()["version"] == 0


def test_numeric_text_and_hard_ranges_are_refused(app_server: InProcessServer) -> None:
    client = api_client(app_server, "coordinator")
    subject = new_subject(client)
    form = f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.SCR/1/forms/F.HTWT/1"
    response = client.put(
        form, json={"version": 0, "values": {"IG.HTWT": {"1": {"HEIGHT": "tall", "WEIGHT": "400"}}}}
    )
    assert response.status_code == 422
    messages = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "'tall' is not a plain number" in messages["IG.HTWT:1:HEIGHT"]
    assert "outside the allowed range" in messages["IG.HTWT:1:WEIGHT"]


def test_save_read_conflict_reasons_and_audit_trail(app_server: InProcessServer) -> None:
    client = api_client(app_server, "coordinator")
    subject = new_subject(client)
    consent = {"IG.IC": {"1": {"ICVER": "<b>2.0</b>", "ICDAT": "2026-03-10", "ICLTFU": "Y"}}}
    saved = client.put(
        IC.format(id=subject), json={"version": 0, "values": consent, "complete": True}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"version": 1, "status": "complete", "changed": 3}
    read = client.get(IC.format(id=subject)).json()
    assert read["values"]["IG.IC"]["1"]["ICVER"] == "<b>2.0</b>"  # stored as typed

    stale = client.put(IC.format(id=subject), json={"version": 0, "values": consent})
    assert stale.status_code == 409
    assert "Someone else saved this form" in stale.json()["detail"]

    changed = {"IG.IC": {"1": {**consent["IG.IC"]["1"], "ICDAT": "2026-03-11"}}}
    unexplained = client.put(
        IC.format(id=subject), json={"version": 1, "values": changed, "complete": True}
    )
    assert unexplained.status_code == 422
    assert unexplained.json()["errors"] == [
        {
            "field": "IG.IC:1:ICDAT",
            "message": "was changed on a complete form: give a reason for the change",
        }
    ]
    explained = client.put(
        IC.format(id=subject),
        json={
            "version": 1,
            "values": changed,
            "complete": True,
            "reasons": [{"field": "IG.IC:1:ICDAT", "reason": "date misread from the ICF"}],
        },
    )
    assert explained.status_code == 200, explained.text
    trail = client.get(IC.format(id=subject) + "/items/IG.IC/1/ICDAT/audit").json()
    assert [
        (t["old_value"], t["new_value"], t["username"], t["reason"], t["source"]) for t in trail
    ] == [
        (None, "2026-03-10", "coordinator", None, "api"),
        ("2026-03-10", "2026-03-11", "coordinator", "date misread from the ICF", "api"),
    ]


def test_malformed_and_oversized_requests_get_clear_json_errors(
    app_server: InProcessServer,
) -> None:
    client = api_client(app_server, "coordinator")
    subject = new_subject(client)
    unknown = client.put(
        DM.format(id=subject), json={"version": 0, "values": {"IG.DM": {"1": {"NOPE": "1"}}}}
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {"field": "IG.DM:1:NOPE", "message": "F.DM has no such item"}
    ]
    broken = client.put(
        DM.format(id=subject), content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"] == "The request is not valid."
    wrong_type = client.put(DM.format(id=subject), json={"version": "1", "values": {}})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["field"] == "body.version"
    huge = client.put(
        DM.format(id=subject),
        json={"version": 0, "values": {"IG.DM": {"1": {"SEX": "F" * 3_000_000}}}},
    )
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
    assert client.get(DM.format(id=subject)).json()["version"] == 0


def test_openapi_documents_the_api(app_server: InProcessServer) -> None:
    schema = app_server.client().get("/openapi.json").json()
    assert "/api/v1/studies/{study_oid}/subjects" in schema["paths"]
    assert not any(path.startswith("/subjects") for path in schema["paths"])


def test_lab_results_are_flagged_against_the_normal_range_given(
    app_server: InProcessServer,
) -> None:
    client = api_client(app_server, "coordinator")
    subject = new_subject(client)
    form = f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.SCR/1/forms/F.LBHEM/1"
    rows = {
        "1": {"LBORRES": "2.1", "LBORRESU": "10^9/L", "LBORNRLO": "3.5", "LBORNRHI": "9.5"},
        "9": {"LBORRES": "180", "LBORRESU": "10^9/L", "LBORNRLO": "125", "LBORNRHI": "350"},
    }
    saved = client.put(
        form,
        json={
            "version": 0,
            "values": {"IG.LBHEM": {"1": {"LBDAT": "2026-03-01"}}, "IG.LBHEM.LB": rows},
        },
    )
    assert saved.status_code == 200, saved.text
    read = client.get(form).json()
    assert read["values"]["IG.LBHEM.LB"]["1"]["LBNRIND"] == "LOW"
    assert read["values"]["IG.LBHEM.LB"]["9"]["LBNRIND"] == "NORMAL"
    assert "IG.LBHEM.LB:1:LBCLSIG" in read["missing"]  # a low value asks whether it matters
    assert "IG.LBHEM.LB:9:LBCLSIG" not in read["missing"]


def test_more_concurrent_requests_than_worker_threads_all_succeed(
    live_server: LiveServer,
) -> None:
    """Requests beyond the database's capacity wait in the event loop, not in worker threads:
    100 at once (the thread pool has 40) must neither stall nor fail."""
    client = api_client(live_server, "coordinator")
    subject = new_subject(client)
    headers = dict(client.headers)

    async def read_all() -> list[int]:
        async with httpx.AsyncClient(
            base_url=live_server.url,
            headers=headers,
            timeout=20,
            limits=httpx.Limits(max_connections=100),
        ) as many:
            responses = await asyncio.gather(*(many.get(DM.format(id=subject)) for _ in range(100)))
        return [response.status_code for response in responses]

    started = time.monotonic()
    assert asyncio.run(read_all()) == [200] * 100
    assert time.monotonic() - started < 20

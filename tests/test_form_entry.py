"""Data entry as sites use it, over real HTTP: nothing is stored wrongly or silently. Each test
is a defect found by trying TrialDesk as its users would. On SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from lxml import html
from sqlmodel import Session, select

from app.models import AuditRecord, FormData, ItemData
from tests.conftest import InProcessServer, csrf_token, logged_in_client
from tests.test_api import api_client
from tests.test_web import FORM, complete_consent, register, save

HEIGHT_WEIGHT = "/subjects/{id}/events/SE.SCR/1/forms/F.HTWT/1"


def page_errors(response: httpx.Response) -> tuple[list[str], dict[str, str]]:
    """The lines of the summary at the top of a refused form, and each field's message."""
    document = html.fromstring(response.text)
    summary = [
        li.text_content().strip() for li in document.xpath("//*[@class='error-summary']//li")
    ]
    fields = {
        str(wrap.get("id")).removesuffix("-wrap"): " ".join(
            e.text_content().strip() for e in wrap.xpath(".//*[@class='error']")
        )
        for wrap in document.xpath("//div[contains(@class, 'has-error')]")
    }
    return summary, fields


def stored_values(server: InProcessServer, item_oid: str) -> list[str | None]:
    with Session(server.app.fastapi.state.engine) as session:
        return list(session.exec(select(ItemData.value).where(ItemData.item_oid == item_oid)))


@pytest.mark.parametrize("typed", ["150,000", "1,500", "75,5"])
def test_a_number_with_a_separator_is_refused_saying_how_to_type_it(
    app_server: InProcessServer, typed: str
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    fields = {"IG.HTWT:1:WEIGHT": typed, "IG.HTWT:1:HEIGHT": "160"}
    response = save(coordinator, subject, "F.HTWT", fields, version=0)
    assert response.status_code == 422
    summary, _ = page_errors(response)
    assert len(summary) == 1 and summary[0].startswith(f"Weight: '{typed}' is not a plain number")
    assert "separators" in summary[0] or "comma" in summary[0]
    assert stored_values(app_server, "IT.HTWT.WEIGHT") == []
    api = api_client(app_server, "coordinator")
    answer = api.put(
        f"/api/v1/studies/ZM001{HEIGHT_WEIGHT.format(id=subject)}",
        json={"version": 0, "values": {"IG.HTWT": {"1": {"WEIGHT": typed}}}},
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "IG.HTWT:1:WEIGHT"
    assert "not a plain number" in answer.json()["errors"][0]["message"]
    assert stored_values(app_server, "IT.HTWT.WEIGHT") == []


def test_a_number_is_stored_as_typed(app_server: InProcessServer) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    fields = {"IG.HTWT:1:WEIGHT": "61.0", "IG.HTWT:1:HEIGHT": "160.0"}
    assert save(coordinator, subject, "F.HTWT", fields, version=0).status_code == 303
    assert stored_values(app_server, "IT.HTWT.WEIGHT") == ["61.0"]
    assert stored_values(app_server, "IT.HTWT.HEIGHT") == ["160.0"]


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("2025-02-30", "2025-02-30 is not a real calendar date"),
        ("9999-12-31", "9999-12-31 is after today"),
        ("1800-01-01", "1800-01-01 is before 1900-01-01"),
    ],
)
def test_an_impossible_or_implausible_date_is_refused_on_the_page(
    app_server: InProcessServer, typed: str, message: str
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    fields = {"IG.IC:1:ICVER": "2.0", "IG.IC:1:ICDAT": typed, "IG.IC:1:ICLTFU": "Y"}
    response = save(coordinator, subject, "F.IC", fields, version=0)
    assert response.status_code == 422
    summary, _ = page_errors(response)
    assert any(line.startswith("Date main ICF signed:") and message in line for line in summary)
    assert stored_values(app_server, "IT.IC.ICDAT") == []


@pytest.mark.parametrize(
    "path",
    [
        "/subjects/{id}/events/SE.SCR/2/forms/F.DM/1",  # Screening #2
        "/subjects/{id}/events/SE.SCR/1/forms/F.DM/2",  # Demographics #2
        "/subjects/{id}/events/SE.UNS/7/forms/F.VS/1",  # an undated Unscheduled #7
        "/subjects/{id}/events/SE.LOG/1/forms/F.CRS/500",  # CRS episode #500
    ],
)
def test_repeats_the_casebook_does_not_have_cannot_be_opened_or_written(
    app_server: InProcessServer, path: str
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    url = path.format(id=subject)
    assert coordinator.get(url).status_code == 404
    token = csrf_token(coordinator, f"/subjects/{subject}")
    posted = coordinator.post(url, data={"csrftoken": token, "_version": "0", "_action": "save"})
    assert posted.status_code == 404
    api = api_client(app_server, "coordinator")
    assert (
        api.put(f"/api/v1/studies/ZM001{url}", json={"version": 0, "values": {}}).status_code == 404
    )
    with Session(app_server.app.fastapi.state.engine) as session:
        assert session.exec(select(FormData)).all() == []
    # the next episode of a log form is offered, and can be written
    episode = f"/subjects/{subject}/events/SE.LOG/1/forms/F.CRS/1"
    assert coordinator.get(episode).status_code == 200


def test_save_on_a_complete_form_keeps_it_complete(app_server: InProcessServer) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    assert complete_consent(coordinator, subject, "2026-01-05").status_code == 303
    fields = {"IG.IC:1:ICVER": "2.0", "IG.IC:1:ICDAT": "2026-01-06", "IG.IC:1:ICLTFU": "Y"}
    saved = save(coordinator, subject, "F.IC", fields, version=1, reason="wrong day")
    assert saved.status_code == 303
    page = coordinator.get(FORM.format(id=subject, form="F.IC"))
    status = html.fromstring(page.text).find_class("form-status")[0].text_content()
    assert status == "complete"
    emptied = {**fields, "IG.IC:1:ICDAT": ""}
    refused = save(coordinator, subject, "F.IC", emptied, version=2, reason="unsure")
    assert refused.status_code == 422
    summary, _ = page_errors(refused)
    assert summary == ["Date main ICF signed: is required: the form is complete"]


def test_a_crafted_post_of_one_eligibility_row_keeps_the_other_rows_and_the_decision(
    app_server: InProcessServer,
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    rows = {f"IG.IE.IECRIT:{n}:IEORRES": "Y" if n <= 11 else "N" for n in range(1, 25)}
    whole = {**rows, "IG.IE:1:ELIGYN": "Y", "IG.IE:1:ENRLDAT": "2026-01-06"}
    assert save(coordinator, subject, "F.IE", whole, version=0).status_code == 303
    one_row = {"IG.IE.IECRIT:3:_row": "1", "IG.IE.IECRIT:3:IEORRES": "Y"}
    assert save(coordinator, subject, "F.IE", one_row, version=1).status_code == 303
    assert len([v for v in stored_values(app_server, "IT.IE.IEORRES") if v]) == 24
    assert stored_values(app_server, "IT.IE.ELIGYN") == ["Y"]
    assert stored_values(app_server, "IT.IE.ELIGDER") == ["Y"]


def test_reasons_posted_from_the_pages_have_the_api_limit(app_server: InProcessServer) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    assert complete_consent(coordinator, subject, "2026-01-05").status_code == 303
    fields = {"IG.IC:1:ICVER": "2.0", "IG.IC:1:ICDAT": "2026-01-06", "IG.IC:1:ICLTFU": "Y"}
    long = save(coordinator, subject, "F.IC", fields, version=1, reason="x" * 100_000)
    assert long.status_code == 422
    assert "A reason is at most 500 characters; this one has 100000" in long.text
    path = FORM.format(id=subject, form="F.ECHO")
    token = csrf_token(coordinator, path)
    not_done = coordinator.post(path, data={
        "csrftoken": token, "_version": "0", "_action": "not_done",
        "_not_done_reason": "y" * 100_000,
    })  # fmt: skip
    assert not_done.status_code == 422
    with Session(app_server.app.fastapi.state.engine) as session:
        reasons = session.exec(select(AuditRecord.reason)).all()
        assert max(len(reason or "") for reason in reasons) <= 500
    assert stored_values(app_server, "IT.IC.ICDAT") == ["2026-01-05"]


def test_a_refused_save_lists_its_problems_at_the_top_and_only_real_ones(
    app_server: InProcessServer,
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    in_progress = save(coordinator, subject, "F.HTWT", {"IG.HTWT:1:WEIGHT": "heavy"}, version=0)
    summary, fields = page_errors(in_progress)
    # an in-progress save may leave required answers empty: only the bad value is listed
    assert len(summary) == 1 and summary[0].startswith("Weight: 'heavy' is not a plain number")
    assert list(fields) == ["f-IG_HTWT-1-WEIGHT"]
    link = html.fromstring(in_progress.text).xpath("//*[@class='error-summary']//a/@href")
    assert link == ["#f-IG_HTWT-1-WEIGHT"]
    complete = save(coordinator, subject, "F.HTWT", {"IG.HTWT:1:WEIGHT": "60"}, version=0,
                    action="complete")  # fmt: skip
    summary, _ = page_errors(complete)
    assert "Height: is required to mark the form complete" in summary


def test_removing_a_row_of_a_complete_form_needs_a_reason_and_says_so(
    app_server: InProcessServer,
) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    subject = register(coordinator)
    path = FORM.format(id=subject, form="F.MH")
    fields = {"IG.MH:1:MHYN": "Y"} | {
        f"IG.MH.MHLOG:{n}:{k}": v
        for n in (1, 2)
        for k, v in {"MHCAT": "GENERAL", "MHTERM": "Hypertension", "MHSTDAT": "2015",
                     "MHONGO": "Y", "MHTOXGR": "1"}.items()
    }  # fmt: skip
    token = csrf_token(coordinator, path)
    base = {"csrftoken": token, "_version": "0", "_action": "complete"}
    first = coordinator.post(path, data={**base, **fields})
    assert first.status_code == 303, page_errors(first)
    kept = {k: v for k, v in fields.items() if not k.startswith("IG.MH.MHLOG:2:")}
    removal = {**base, **kept, "_version": "1", "_removed": "IG.MH.MHLOG:2"}
    refused = coordinator.post(path, data=removal)
    assert refused.status_code == 422
    summary, _ = page_errors(refused)
    assert summary and all(
        line.startswith("Medical history conditions, row 2:") and "give a reason" in line
        for line in summary
    )
    accepted = coordinator.post(path, data={**removal, "_reason": "entered twice"})
    assert accepted.status_code == 303
    assert stored_values(app_server, "IT.MH.MHTERM") == ["Hypertension"]
    removed = page_errors(coordinator.get(path))  # the page shows one row left
    assert removed == ([], {})


def test_the_api_saves_part_of_a_form_and_removes_rows_only_when_asked(
    app_server: InProcessServer,
) -> None:
    api = api_client(app_server, "coordinator")
    subject = api.post("/api/v1/studies/ZM001/subjects", json={"site_id": 1}).json()["id"]
    path = f"/api/v1/studies/ZM001/subjects/{subject}/events/SE.SCR/1/forms/F.MH/1"
    rows = {
        str(n): {"MHCAT": "GENERAL", "MHTERM": term} for n, term in ((1, "Asthma"), (2, "Migraine"))
    }
    values = {"IG.MH": {"1": {"MHYN": "Y"}}, "IG.MH.MHLOG": rows}
    assert api.put(path, json={"version": 0, "values": values}).status_code == 200
    one = {"IG.MH.MHLOG": {"2": {"MHCAT": "GENERAL", "MHTERM": "Migraine with aura"}}}
    assert api.put(path, json={"version": 1, "values": one}).status_code == 200
    stored = api.get(path).json()["values"]
    terms = stored["IG.MH.MHLOG"]
    assert [terms[k]["MHTERM"] for k in sorted(terms)] == ["Asthma", "Migraine with aura"]
    assert stored["IG.MH"]["1"]["MHYN"] == "Y"
    removed = api.put(path, json={"version": 2, "values": {}, "remove_rows": ["IG.MH.MHLOG:1"]})
    assert removed.status_code == 200
    assert list(api.get(path).json()["values"]["IG.MH.MHLOG"]) == ["2"]
    bad = api.put(path, json={"version": 3, "values": {}, "remove_rows": ["IG.NOPE:1"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "remove_rows.IG.NOPE:1"

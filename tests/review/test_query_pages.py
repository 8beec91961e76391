"""The query pages as users get them over HTTP: the site answers next to the item, the monitor
filters the list, closes several queries at once and downloads them as CSV; a site user sees
only their site's queries (both databases)."""

from __future__ import annotations

import csv
import io

from lxml import html
from sqlmodel import Session, select

from app.models import Query
from app.study.loader import Study
from tests import factories
from tests.checks.test_check_engine import crs
from tests.conftest import InProcessServer, csrf_token, logged_in_client


def test_a_query_is_answered_on_the_form_and_closed_from_the_list(
    app_server: InProcessServer, zm001: Study
) -> None:
    engine = app_server.app.fastapi.state.engine
    with Session(engine, expire_on_commit=False) as session:
        site1 = factories.register(session, zm001)
        site2 = factories.register(session, zm001, site_id=2, by="coordinator2")
        for subject, by in ((site1, "coordinator"), (site2, "coordinator2")):
            outcome = factories.save(
                session, zm001, subject, "F.CRS", crs("2"), event="SE.LOG", by=by
            )
            assert outcome.saved
        first = session.exec(select(Query).where(Query.subject_id == site1.id)).one()
    form = f"/subjects/{site1.id}/events/SE.LOG/1/forms/F.CRS/1"

    site = logged_in_client(app_server, "coordinator")
    page = html.fromstring(site.get(form).text)
    (badge,) = page.find_class("query-badge")
    assert badge.text_content().startswith("Query open (EC051): The investigator's CRS grade")
    assert badge.get("href") == f"#query-{first.id}"
    answered = site.post(f"/subjects/{site1.id}/queries/{first.id}", data={
        "csrftoken": csrf_token(site, form), "action": "answer", "version": "1",
        "text": "Grade 2 as assessed at the bedside", "next": form,
    })  # fmt: skip
    assert (
        answered.status_code == 303 and answered.headers["location"] == f"{form}#query-{first.id}"
    )
    mine = html.fromstring(site.get("/queries").text)
    assert [row.find("td[3]").text_content() for row in mine.find_class("state-answered")] == [
        "01-001"
    ]
    assert "02-001" not in site.get("/queries").text  # another site's query

    monitor = logged_in_client(app_server, "monitor")
    listed = html.fromstring(monitor.get("/queries?who=reviewer").text)
    assert [
        td.text_content() for td in listed.xpath("//table[contains(@class,'query-list')]//td[3]")
    ] == ["01-001"]
    everything = monitor.get("/queries?check=EC051").text
    assert "01-001" in everything and "02-001" in everything
    ids = [str(q) for q in (first.id, first.id + 1)]
    refused = monitor.post("/queries/bulk", data={
        "csrftoken": csrf_token(monitor, "/queries"), "action": "close", "query": ids, "text": "",
    })  # fmt: skip
    assert refused.status_code == 409 and "Give a reason" in refused.text  # one is still open
    closed = monitor.post("/queries/bulk", data={
        "csrftoken": csrf_token(monitor, "/queries"), "action": "close", "query": ids,
        "text": "grade confirmed at SDV", "next": "/queries?check=EC051",
    })  # fmt: skip
    assert closed.status_code == 303 and closed.headers["location"] == "/queries?check=EC051&done=2"
    rows = list(csv.DictReader(io.StringIO(monitor.get("/queries.csv?state=closed").text)))
    assert [(r["subject"], r["check"], r["state"], r["item"]) for r in rows] == [
        ("01-001", "EC051", "closed", "IT.CRS.CRSGRINV"),
        ("02-001", "EC051", "closed", "IT.CRS.CRSGRINV"),
    ]
    assert rows[0]["response"] == "Grade 2 as assessed at the bedside"
    subjects = html.fromstring(site.get("/subjects").text)
    assert [td.text_content() for td in subjects.find_class("query-count")] == ["0"]

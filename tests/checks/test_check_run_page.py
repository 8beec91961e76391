"""The checks page: a data manager starts a batch run (dry or not) over the study, a site or a
subject, the page polls its progress and shows the findings by check, linked to the queries;
an unknown subject is named; other roles may not (both databases)."""

from __future__ import annotations

import time

import httpx
import lxml.html
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.models import AuditRecord, CheckRunJob, Query
from app.study.loader import Study
from tests.checks.test_batch_run import store_before_the_checks
from tests.conftest import InProcessServer, csrf_token, logged_in_client


def finished_runs(page: httpx.Client, expected: int) -> lxml.html.HtmlElement:
    """The runs table once `expected` runs are no longer busy (polled as the page does)."""
    for _ in range(200):
        table = lxml.html.fromstring(page.get("/checks/runs").text)
        states = table.xpath("//tr[@class='check-run']/@data-state")
        if len(states) == expected and not {"queued", "running"} & set(states):
            return table
        time.sleep(0.1)
    raise AssertionError(f"runs still busy: {states}")


def test_a_data_manager_runs_the_checks_from_the_page(
    demo_engine: Engine, database_url: str, zm001: Study
) -> None:
    key = store_before_the_checks(demo_engine, zm001)
    with InProcessServer(database_url, zm001) as server:
        assert logged_in_client(server, "monitor").get("/checks").status_code == 403
        page = logged_in_client(server, "datamanager")
        token = csrf_token(page, "/checks")
        unknown = page.post("/checks/runs", data={"csrftoken": token, "subject": "09-999"})
        assert unknown.status_code == 422 and "no subject 09-999 in ZM001" in unknown.text

        dry = page.post(
            "/checks/runs", data={"csrftoken": token, "dry_run": "true"}, follow_redirects=True
        )
        assert dry.status_code == 200 and "Recent runs" in dry.text
        table = finished_runs(page, 1)
        row = table.xpath("//tr[@class='check-run']")[0]
        text = row.text_content()
        assert "the whole study (dry run)" in text and "3 findings on 1 subjects" in text
        assert "3 open" in text
        assert row.xpath(".//a/text()") == ["EC045", "EC051", "EC053"]
        with Session(demo_engine) as session:
            assert session.exec(select(Query)).all() == []

        page.post("/checks/runs", data={"csrftoken": token, "subject": key})
        table = finished_runs(page, 2)
        newest = table.xpath("//tr[@class='check-run']")[0].text_content()
        assert f"subject {key}" in newest and "3 findings" in newest
        listed = page.get("/queries?check=EC051")
        assert "EC051" in listed.text and key in listed.text
    with Session(demo_engine) as session:
        assert len(session.exec(select(Query)).all()) == 3
        assert [job.state for job in session.exec(select(CheckRunJob))] == ["done", "done"]
        runs = session.exec(select(AuditRecord.details).where(AuditRecord.action == "check_run"))
        assert [d.split(";")[0] for d in runs] == ["job 1: done", "job 2: done"]

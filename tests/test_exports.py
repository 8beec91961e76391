"""Export jobs as a sponsor meets them: start an export through the API or the page, watch it,
download the zip, and find in it valid files whose manifest tells the truth; jobs survive the
loss of the process that ran them and are served by any process."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import lxml.html
import pytest
from lxml import etree
from sqlalchemy import Engine, event
from sqlmodel import Session, col, select

from app.demo import load_demo
from app.exporters.odm_common import q
from app.models import AuditRecord, ExportJob, ExportState, Subject, UserAccount, utcnow
from app.schemas import odm_schema, validate_streaming
from app.study.loader import Study
from tests import factories
from tests.conftest import LiveServer, csrf_token, logged_in_client


@pytest.fixture
def demo_subjects(engine: Engine, zm001: Study) -> Engine:
    """Demo accounts and sites with eight subjects across dose levels and statuses."""
    load_demo(engine, zm001, subjects=8)
    return engine


@pytest.fixture
def exporting_server(
    demo_subjects: Engine, database_url: str, zm001: Study
) -> Iterator[LiveServer]:
    with LiveServer(database_url, zm001) as server:
        yield server


def api_client(server: LiveServer, username: str = "sponsor") -> httpx.Client:
    engine = server.app.fastapi.state.engine
    with Session(engine) as session:
        secret = factories.api_token(session, username, "exports")
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    )


def wait_for(client: httpx.Client, job_id: int, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/studies/ZM001/exports/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"export job {job_id} still {job['state']} after {seconds} s")


def unzip(content: bytes) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert archive.testzip() is None
    return archive


def check_manifest(archive: zipfile.ZipFile) -> list[dict[str, Any]]:
    """The manifest lists every other file of the zip with its true size and SHA-256."""
    files: list[dict[str, Any]] = json.loads(archive.read("manifest.json"))["files"]
    assert sorted(f["name"] for f in files) == sorted(
        name for name in archive.namelist() if name != "manifest.json"
    )
    for entry in files:
        data = archive.read(entry["name"])
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    return files


def elements(path: Path, tag: str) -> list[etree._Element]:
    return [element for _, element in etree.iterparse(str(path), tag=q(tag))]


def test_a_sponsor_exports_a_cohort_as_odm_through_the_api(
    exporting_server: LiveServer, tmp_path: Path
) -> None:
    client = api_client(exporting_server)
    started = client.post(
        "/api/v1/studies/ZM001/exports",
        json={"kind": "odm_snapshot", "scope": "cohort", "cohort": "DL1"},
    )
    assert started.status_code == 202, started.text
    assert started.json()["scope"] == "cohort DL1"
    job = wait_for(client, started.json()["id"])
    assert job["state"] == "done", job["message"]
    assert job["requested_by"] == "Sam Sponsor" or job["requested_by"]
    download = client.get(job["download"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert hashlib.sha256(download.content).hexdigest() == job["sha256"]
    archive = unzip(download.content)
    (entry,) = check_manifest(archive)
    assert entry["name"] == "zm001-odm-snapshot.xml"
    assert entry == job["files"][0]
    odm_file = tmp_path / entry["name"]
    odm_file.write_bytes(archive.read(entry["name"]))
    validate_streaming(odm_file, odm_schema())
    engine = exporting_server.app.fastapi.state.engine
    with Session(engine) as session:
        cohort = set(session.exec(select(Subject.subject_key).where(Subject.dose_level == "DL1")))
        actions = list(
            session.exec(
                select(AuditRecord.action)
                .where(col(AuditRecord.action).startswith("export"))
                .order_by(col(AuditRecord.id))
            )
        )
    keys = {element.get("SubjectKey") for element in elements(odm_file, "SubjectData")}
    assert cohort and keys == cohort
    assert entry["rows"] == len(elements(odm_file, "ItemData"))
    assert actions == ["export_requested", "export", "export_download"]


def test_requests_that_name_nothing_are_refused_naming_the_field(
    exporting_server: LiveServer,
) -> None:
    client = api_client(exporting_server)
    cases = [
        ({"kind": "sdtm", "scope": "cohort", "cohort": "DL9"}, "body.cohort", COHORTS),
        ({"kind": "sdtm", "scope": "cohort", "cohort": "dl2"}, "body.cohort", "'dl2'"),
        ({"kind": "sdtm", "scope": "cohort", "cohort": "DL2:ESC"}, "body.cohort", COHORTS),
        ({"kind": "sdtm", "scope": "subject", "subject": "99-999"}, "body.subject", "99-999"),
        ({"kind": "sdtm", "scope": "site", "site": "77"}, "body.site", "77"),
        ({"kind": "sdtm", "formats": []}, "body.formats", "at least one"),
        ({"kind": "pdf"}, "body.kind", ""),
    ]
    for body, field, words in cases:
        response = client.post("/api/v1/studies/ZM001/exports", json=body)
        assert response.status_code == 422, body
        errors = response.json()["errors"]
        assert errors[0]["field"] == field, response.json()
        assert words in errors[0]["message"]
    assert client.get("/api/v1/studies/ZM001/exports").json() == []


COHORTS = "dose cohorts are DL1, DL2, DL3, DL4, each optionally with a phase"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_exports_page_refuses_an_unknown_cohort_naming_the_valid_ones(
    exporting_server: LiveServer,
) -> None:
    browser = logged_in_client(exporting_server, "sponsor")
    for cohort in ("DL5", "dl2", "DL2:ESC"):
        response = browser.post("/exports", data={
            "csrftoken": csrf_token(browser, "/exports"), "kind": "sdtm", "formats": "csv",
            "scope": "cohort", "cohort": cohort,
        })  # fmt: skip
        assert response.status_code == 422, cohort
        error = str(lxml.html.fromstring(response.text).xpath("string(//p[@class='error'])"))
        assert error.startswith(f"cohort: no dose cohort '{cohort}'") and COHORTS in error
    assert api_client(exporting_server).get("/api/v1/studies/ZM001/exports").json() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_site_users_may_not_export(exporting_server: LiveServer) -> None:
    client = api_client(exporting_server, "coordinator")
    response = client.post("/api/v1/studies/ZM001/exports", json={"kind": "odm_snapshot"})
    assert response.status_code == 403
    assert "export" in response.json()["detail"]


def lost_job(engine: Engine, kind: str) -> int:
    """Store a whole-study job of the sponsor's, running on a process that stopped 5 minutes
    ago (its heartbeat is that old); returns its id."""
    with Session(engine) as session:
        sponsor = session.exec(select(UserAccount).where(UserAccount.username == "sponsor")).one()
        lost = ExportJob(
            study_id=1, kind=kind, scope_kind="study", scope_text="whole study", state=ExportState.RUNNING,
            requested_by_id=sponsor.id or 0, progress_done=3, progress_total=8,
            heartbeat_at=utcnow() - timedelta(minutes=5), worker="gone-host:1",
        )  # fmt: skip
        session.add(lost)
        session.commit()
        return lost.id or 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_interrupted_job_is_marked_failed_and_can_be_started_again(
    exporting_server: LiveServer,
) -> None:
    lost_id = lost_job(exporting_server.app.fastapi.state.engine, "odm_transactional")
    browser = logged_in_client(exporting_server, "sponsor")
    page = browser.get("/exports")
    assert "Interrupted: the server process running it stopped" in page.text
    assert f'action="/exports/{lost_id}/again"' in page.text
    again = browser.post(
        f"/exports/{lost_id}/again", data={"csrftoken": csrf_token(browser, "/exports")}
    )
    assert again.status_code == 303
    client = api_client(exporting_server)
    jobs = client.get("/api/v1/studies/ZM001/exports").json()
    assert [job["state"] for job in jobs[1:]] == ["failed"]
    rerun = wait_for(client, jobs[0]["id"])
    assert (rerun["kind"], rerun["scope"], rerun["state"]) == (
        "odm_transactional",
        "whole study",
        "done",
    )


def test_listing_jobs_only_reads_and_shows_an_interrupted_job_as_interrupted(
    exporting_server: LiveServer,
) -> None:
    engine = exporting_server.app.fastapi.state.engine
    lost_id = lost_job(engine, "define")
    browser, client = logged_in_client(exporting_server, "sponsor"), api_client(exporting_server)
    client.get(
        "/api/v1/studies/ZM001/exports"
    )  # a token's first use is recorded: not a listing's write
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        page = browser.get("/exports")
        poll = browser.get("/exports/jobs")
        listed = client.get("/api/v1/studies/ZM001/exports").json()
        read = client.get(f"/api/v1/studies/ZM001/exports/{lost_id}").json()
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert statements, "the listener saw the listing's queries"
    writes = [s for s in statements if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    interrupted = "failed: Interrupted: the server process running it stopped. Start it again."
    for html in (page.text, poll.text):
        assert f'data-job="{lost_id}" data-state="failed"' in html
        assert interrupted in " ".join(html.split())
        assert f'action="/exports/{lost_id}/again"' in html
    for job in (listed[0], read):
        assert (job["id"], job["state"]) == (lost_id, "failed")
        assert job["message"].startswith("Interrupted: the server process running it stopped")
    with Session(engine) as session:
        assert session.get(ExportJob, lost_id).state == ExportState.RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_job_started_on_one_server_process_is_watched_and_downloaded_on_another(
    exporting_server: LiveServer, database_url: str, zm001: Study
) -> None:
    with LiveServer(database_url, zm001) as other:
        first, second = api_client(exporting_server), api_client(other)
        started = first.post("/api/v1/studies/ZM001/exports", json={"kind": "odm_transactional"})
        job = wait_for(second, started.json()["id"])
        assert job["state"] == "done"
        download = second.get(job["download"])
        assert hashlib.sha256(download.content).hexdigest() == job["sha256"]
        check_manifest(unzip(download.content))

"""Queries and freezes or locks round-trip through TrialDesk's ODM exports: the snapshot and
the transactional export carry them valid against the ODM 1.3.2 schema, the import restores
them into another database of the same study, importing again changes nothing, and an
export's manifest states the study-wide lock (both databases)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app import audit, export_jobs
from app.access import load_access
from app.config import Settings
from app.crf.changes import (
    DataLockSet,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    StudyLockSet,
)
from app.db import make_engine
from app.demo import load_demo
from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.produce import ExportKind, ExportRequest
from app.exporters.scope import ExportScope
from app.models import DataLock, Query, Subject, pk
from app.review.query_reads import query_history
from app.schemas import odm_schema, validate_streaming
from app.study.loader import Study
from tests import factories
from tests.checks.test_check_engine import CRS_AE, crs
from tests.conftest import migrated_database
from tests.test_odm_import import run_import

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
CRS_ITEM = QueryTarget("SE.LOG", 1, "F.CRS", 1, "IG.CRS", 1, "IT.CRS.CRSGRINV")
CRS_FORM = QueryTarget("SE.LOG", 1, "F.CRS", 1)


def build_review_state(session: Session, study: Study) -> None:
    """Two subjects: the first with a system query (open) and manual queries answered,
    closed and cancelled, its CRS form locked; the second's casebook frozen."""
    first = factories.register(session, study)
    assert factories.save(
        session, study, first, "F.AE", {"IG.AE": {1: CRS_AE}}, event="SE.LOG"
    ).saved
    assert factories.save(session, study, first, "F.CRS", crs("2"), event="SE.LOG").saved
    factories.date_visit(session, study, first, "SE.SCR", date(2026, 1, 5))

    def query(target: QueryTarget, text: str) -> Query:
        opened = factories.apply(session, study, QueryOpen(pk(first), target, text), by="monitor")
        return opened.plan.queries[0].query

    def move(found: Query, action: QueryAction, text: str | None, by: str) -> None:
        session.refresh(found)
        change = QueryChange(pk(first), pk(found), found.version, action, text)
        factories.apply(session, study, change, by=by)

    answered = query(CRS_ITEM, "Which assessment gives this grade?")
    move(answered, QueryAction.ANSWER, "The night-time oxygen assessment.", "coordinator")
    closed = query(QueryTarget("SE.SCR"), "Was the visit done on site?")
    move(closed, QueryAction.ANSWER, "Yes, at the clinic.", "coordinator")
    move(closed, QueryAction.CLOSE, None, "datamanager")
    cancelled = query(CRS_FORM, "Is this the right episode?")
    move(cancelled, QueryAction.CANCEL, "Raised on the wrong subject.", "monitor")
    lock = DataLockSet(pk(first), "lock", "Reviewed", "SE.LOG", 1, "F.CRS", 1)
    factories.apply(session, study, lock, by="datamanager")
    second = factories.register(session, study)
    factories.date_visit(session, study, second, "SE.SCR", date(2026, 1, 6))
    factories.apply(session, study, DataLockSet(pk(second), "freeze", "Interim"), by="datamanager")


def queries(session: Session) -> set[tuple[Any, ...]]:
    """Each query as a reader compares it: subject, place, origin, state and texts."""
    rows = session.exec(select(Query, Subject).join(Subject).order_by(col(Query.id)))
    return {
        (
            subject.subject_key, query.event_oid, query.event_repeat, query.form_oid,
            query.form_repeat, query.item_group_oid, query.group_repeat, query.item_oid,
            query.check_id, query.state, query.text, query.response,
        )
        for query, subject in rows
    }  # fmt: skip


def locks(session: Session) -> set[tuple[Any, ...]]:
    rows = session.exec(
        select(DataLock, Subject).join(Subject).where(col(DataLock.released_at).is_(None))
    )
    return {
        (subject.subject_key, lock.event_oid, lock.form_oid, lock.level, lock.reason,
         lock.set_by_name, lock.set_at)
        for lock, subject in rows
    }  # fmt: skip


def without_review(path: Path, out: Path) -> Path:
    """`path` without its query and lock Annotations."""
    document = etree.parse(str(path))
    for value in document.iterfind(".//odm:Annotation/odm:Flag/odm:FlagValue", NS):
        if value.get("CodeListOID") in ("CL.QUERYSTATE", "CL.LOCKSTATE"):
            annotation = value.getparent().getparent()  # type: ignore[union-attr]
            if annotation.getparent() is not None:  # type: ignore[union-attr]
                annotation.getparent().remove(annotation)  # type: ignore[union-attr]
    document.write(str(out), xml_declaration=True, encoding="UTF-8")
    return out


@pytest.fixture
def target(database_url: str, zm001: Study, tmp_path: Path) -> Iterator[Engine]:
    """Another database of the same study, with the demo's sites and accounts."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with migrated_database(backend, tmp_path / "target") as url:
        engine = make_engine(url)
        load_demo(engine, zm001, subjects=0)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("kind", ["snapshot", "transactional"])
def test_queries_and_locks_round_trip_through_an_odm_export(
    demo_engine: Engine, target: Engine, zm001: Study, tmp_path: Path, kind: str
) -> None:
    snapshot, transactional = tmp_path / "snapshot.xml", tmp_path / "transactional.xml"
    with Session(demo_engine, expire_on_commit=False) as session:
        build_review_state(session, zm001)
        write_odm_snapshot(session, zm001, snapshot)
        write_odm_transactional(session, zm001, transactional)
        expected_queries, expected_locks = queries(session), locks(session)
    assert validate_streaming(snapshot, odm_schema()) > 0
    assert validate_streaming(transactional, odm_schema()) > 0
    states = {row[9] for row in expected_queries}
    assert states == {"open", "answered", "closed", "cancelled"}
    assert {row[8] for row in expected_queries} == {"EC051", None}
    if kind == "transactional":
        # The values from the snapshot without its queries and locks; then the history.
        report = run_import(target, zm001, without_review(snapshot, tmp_path / "values.xml"))
        assert report.stored, report.format()
        report = run_import(target, zm001, transactional)
    else:
        report = run_import(target, zm001, snapshot)
    assert report.stored and not report.problems, report.format()
    # The system query is the one the check opened on the imported values, already open.
    assert (report.queries, report.locks) == (3, 2), report.format()
    assert "Restored 3 queries and 2 freezes or locks." in report.format()
    with Session(target) as session:
        assert queries(session) == expected_queries
        assert locks(session) == expected_locks
        closed = session.exec(
            select(Query).where(Query.text == "Was the visit done on site?")
        ).one()
        history = [(r.old_value, r.new_value, r.reason) for r in query_history(session, closed)]
    if kind == "transactional":
        assert history == [
            (None, "open", "Was the visit done on site?"),
            ("open", "answered", "Yes, at the clinic."),
            ("answered", "closed", None),
        ]
    else:
        assert history == [
            (None, "open", "Was the visit done on site?"),
            ("open", "closed", "Yes, at the clinic."),
        ]
    again = run_import(target, zm001, transactional if kind == "transactional" else snapshot)
    # A snapshot's subjects are refused as already here; a transactional file restores nothing.
    assert again.stored == (kind == "transactional") and (again.queries, again.locks) == (0, 0)
    with Session(target) as session:
        assert queries(session) == expected_queries, again.format()
        assert locks(session) == expected_locks


def test_the_transactional_export_holds_each_query_transition(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    path = tmp_path / "transactional.xml"
    with Session(demo_engine, expire_on_commit=False) as session:
        build_review_state(session, zm001)
        write_odm_transactional(session, zm001, path)
    visit = ".//odm:StudyEventData[@StudyEventOID='SE.SCR'][@TransactionType='Context']"
    steps = [
        (
            annotation.get("TransactionType"),
            annotation.findtext("odm:Flag/odm:FlagValue", namespaces=NS),
            json.loads(annotation.findtext("odm:Comment", namespaces=NS) or "{}"),
            element.find("odm:AuditRecord/odm:UserRef", NS),
        )
        for element in etree.parse(str(path)).iterfind(visit, NS)
        for annotation in element.iterfind("odm:Annotation", NS)
    ]
    assert [(kind, state, fields["from"], fields["by"]) for kind, state, fields, *_ in steps] == [
        ("Insert", "open", None, "monitor"),
        ("Update", "answered", "open", "coordinator"),
        ("Update", "closed", "answered", "datamanager"),
    ]
    assert [fields["step"] for _, _, fields, *_ in steps][:2] == [
        "Was the visit done on site?",
        "Yes, at the clinic.",
    ]
    assert all(user is not None and user.get("UserOID") for *_, user in steps)


def test_the_manifest_states_the_study_lock(
    demo_engine: Engine, database_url: str, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        build_review_state(session, zm001)
        factories.apply(session, zm001, StudyLockSet("freeze", "Database freeze"), by="datamanager")
        manager = factories.user(session, "datamanager")
        access = load_access(session, manager, zm001.id)
        request = ExportRequest(ExportKind.ODM_SNAPSHOT, ExportScope(study_id=zm001.id))
        job = export_jobs.create_job(session, zm001, access, request, audit.Actor(manager))
        session.commit()
        job_id = pk(job)
    export_jobs.run_job(demo_engine, zm001, Settings(database_url=database_url), job_id)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(export_jobs.result_chunks(demo_engine, job_id))))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["locks"]["study"]["level"] == "freeze"
    assert manifest["locks"]["study"]["reason"] == "Database freeze"
    forms = manifest["locks"]["forms"]
    assert forms["freeze"] > 0 and forms["lock"] == 0, "the study freeze covers every form"

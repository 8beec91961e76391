"""Freeze and lock through the write path: a frozen form refuses data changes but lets
queries go on, a locked subject refuses everything, each set and released only by a data
manager (with a reason), audited; every entry point (page, API, ODM import, command line)
is refused alike (both databases)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied
from app.crf.changes import (
    DataLockRelease,
    DataLockSet,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    SubjectStatus,
)
from app.exporters.odm_clinical import write_odm_snapshot
from app.models import AuditRecord, DataLock, ItemData, Query, Subject, pk
from app.review.locks import DataLocked
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client
from tests.test_odm_import import run_import

IC = {"IG.IC": {1: {"ICDAT": "2026-01-10", "ICVER": "2.0"}}}
IC_FORM = {"event_oid": "SE.SCR", "event_repeat": 1, "form_oid": "F.IC", "form_repeat": 1}


def freeze_consent(
    session: Session, study: Study, subject: Subject, level: str = "freeze"
) -> DataLock:
    factories.apply(
        session,
        study,
        DataLockSet(pk(subject), level, "monitoring visit 3", **IC_FORM),
        by="datamanager",
    )
    return session.exec(select(DataLock).where(col(DataLock.released_at).is_(None))).one()


def test_a_frozen_form_refuses_data_changes_but_queries_go_on(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", IC).saved
        with pytest.raises(AccessDenied):
            factories.apply(
                session, zm001, DataLockSet(pk(subject), "freeze", None, **IC_FORM), by="monitor"
            )
        lock = freeze_consent(session, zm001, subject)
        again = {"IG.IC": {1: {"ICDAT": "2026-01-11", "ICVER": "2.0"}}}
        with pytest.raises(
            DataLocked,
            match=r"This form is frozen by Liu Yang since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(monitoring visit 3\)",
        ):
            factories.save(session, zm001, subject, "F.IC", again)
        with pytest.raises(DataLocked):
            factories.not_done(session, zm001, subject, "F.IC", "not needed")
        target = QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.ICDAT")
        factories.apply(session, zm001, QueryOpen(pk(subject), target, "Date?"), by="monitor")
        query = session.exec(select(Query)).one()
        factories.apply(
            session,
            zm001,
            QueryChange(pk(subject), pk(query), 1, QueryAction.ANSWER, "As on the ICF"),
        )
        factories.save(
            session, zm001, subject, "F.DM", {"IG.DM": {1: {"SEX": "F"}}}
        )  # another form

        factories.apply(
            session, zm001, DataLockSet(pk(subject), "lock", "database lock"), by="datamanager"
        )
        with pytest.raises(DataLocked, match="This subject's casebook is locked by Liu Yang"):
            factories.apply(
                session,
                zm001,
                QueryChange(pk(subject), pk(query), 2, QueryAction.CLOSE),
                by="monitor",
            )
        with pytest.raises(DataLocked):
            factories.date_visit(session, zm001, subject, "SE.SCR", date(2026, 1, 10))
        with pytest.raises(DataLocked):
            factories.apply(
                session, zm001, SubjectStatus(pk(subject), "screen_failed", date(2026, 1, 12), "x")
            )
        subject_lock = session.exec(select(DataLock).where(DataLock.level == "lock")).one()
        with pytest.raises(DataLocked, match="Give a reason"):
            factories.apply(
                session,
                zm001,
                DataLockRelease(pk(subject), pk(subject_lock), " "),
                by="datamanager",
            )
        for held in (subject_lock, lock):
            factories.apply(
                session,
                zm001,
                DataLockRelease(pk(subject), pk(held), "query to answer"),
                by="datamanager",
            )
        assert factories.save(session, zm001, subject, "F.IC", again).saved
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.username, AuditRecord.old_value, AuditRecord.new_value, AuditRecord.reason)
            .where(col(AuditRecord.action).startswith("data_")).order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
        assert trail == [
            ("data_freeze", "datamanager", None, "freeze", "monitoring visit 3"),
            ("data_lock", "datamanager", None, "lock", "database lock"),
            ("data_release", "datamanager", "lock", None, "query to answer"),
            ("data_release", "datamanager", "freeze", None, "query to answer"),
        ]


def test_a_change_that_would_recalculate_a_locked_form_is_refused(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", IC).saved
        assert factories.save(
            session, zm001, subject, "F.DM", {"IG.DM": {1: {"BRTHDAT": "1990-05-01"}}}
        ).saved
        dm = dict(IC_FORM, form_oid="F.DM")
        factories.apply(
            session, zm001, DataLockSet(pk(subject), "lock", None, **dm), by="datamanager"
        )
        later = {"IG.IC": {1: {"ICDAT": "2026-06-10", "ICVER": "2.0"}}}
        with pytest.raises(DataLocked, match="This change recalculates Demographics"):
            factories.save(session, zm001, subject, "F.IC", later)


def test_every_entry_point_refuses_a_frozen_form(
    demo_engine: Engine, database_url: str, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", IC).saved
        export = tmp_path / "export.xml"
        write_odm_snapshot(session, zm001, export)
        freeze_consent(session, zm001, subject)
        token = factories.api_token(session, "coordinator")
    form = f"/subjects/{subject.id}/events/SE.SCR/1/forms/F.IC/1"
    with InProcessServer(database_url, zm001) as server:
        page = logged_in_client(server, "coordinator")
        posted = page.post(form, data={
            "csrftoken": csrf_token(page, form), "_version": "1", "_action": "save",
            "IG.IC:1:_row": "1", "IG.IC:1:ICDAT": "2026-01-11", "IG.IC:1:ICVER": "2.0",
            "_reason": "typo",
        })  # fmt: skip
        assert posted.status_code == 422 and "This form is frozen by Liu Yang" in posted.text
        api = server.client(headers={"Authorization": f"Bearer {token}"})
        put = api.put(f"/api/v1/studies/ZM001{form}", json={
            "version": 1, "values": {"IG.IC": {"1": {"ICDAT": "2026-01-11"}}}, "reason": "typo",
        })  # fmt: skip
        assert put.status_code == 422 and "This form is frozen" in put.json()["detail"]
    changed = etree.parse(str(export))
    (icdat,) = changed.iterfind(".//{*}ItemData[@ItemOID='IT.IC.ICDAT']")
    icdat.set("Value", "2026-01-11")
    changed.write(str(tmp_path / "changed.xml"))
    # An ODM import (page, command line) adds subjects and never writes into a stored one, so
    # it cannot reach the frozen form: the file is refused whole and nothing changes.
    report = run_import(demo_engine, zm001, tmp_path / "changed.xml")
    assert not report.stored
    assert "01-001: a subject with this SubjectKey is already in TrialDesk" in report.format()
    with Session(demo_engine) as session:
        values = session.exec(select(ItemData.value).where(ItemData.item_oid == "IT.IC.ICDAT"))
        assert values.all() == ["2026-01-10"]

"""The database lock: a study-wide data manager freezes or locks the whole study, refused
while queries are open unless confirmed with a reason; a study freeze or lock refuses every
casebook's data (and new subjects) on every channel, is released with a reason, and is
audited without a subject (both databases)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied
from app.crf.changes import (
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    StudyLockRelease,
    StudyLockSet,
)
from app.models import AuditRecord, DataLock, Query, pk
from app.review.locks import DataLocked
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client

IC = {"IG.IC": {1: {"ICDAT": "2026-01-10", "ICVER": "2.0"}}}
TARGET = QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.ICDAT")


def test_the_study_lock_refuses_every_casebook_and_waits_for_open_queries(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", IC).saved
        with pytest.raises(AccessDenied):
            factories.apply(session, zm001, StudyLockSet("freeze"), by="monitor")
        factories.apply(
            session, zm001, StudyLockSet("freeze", "interim analysis"), by="datamanager"
        )
        again = {"IG.IC": {1: {"ICDAT": "2026-01-11", "ICVER": "2.0"}}}
        with pytest.raises(DataLocked, match=r"The study is frozen by Liu Yang .*interim analysis"):
            factories.save(session, zm001, subject, "F.IC", again)
        with pytest.raises(DataLocked, match="The study is frozen"):
            factories.register(session, zm001)
        factories.apply(session, zm001, QueryOpen(pk(subject), TARGET, "Date?"), by="monitor")
        query = session.exec(select(Query)).one()

        with pytest.raises(DataLocked, match="1 query is still open, answered or resolved"):
            factories.apply(session, zm001, StudyLockSet("lock", "final"), by="datamanager")
        with pytest.raises(DataLocked, match="confirm the database lock with a reason"):
            factories.apply(session, zm001, StudyLockSet("lock", None, True), by="datamanager")
        factories.apply(
            session, zm001, StudyLockSet("lock", "query on a secondary item", True), by="datamanager"
        )  # fmt: skip
        with pytest.raises(DataLocked, match="The study is locked by Liu Yang"):
            factories.apply(
                session, zm001, QueryChange(pk(subject), pk(query), 1, QueryAction.ANSWER, "ok")
            )
        locks = session.exec(select(DataLock).order_by(col(DataLock.id))).all()
        with pytest.raises(DataLocked, match="Give a reason"):
            factories.apply(session, zm001, StudyLockRelease(pk(locks[1]), ""), by="datamanager")
        for lock in reversed(locks):
            factories.apply(
                session, zm001, StudyLockRelease(pk(lock), "analysis done"), by="datamanager"
            )
        assert factories.save(session, zm001, subject, "F.IC", again).saved
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.subject_id, AuditRecord.old_value,
                   AuditRecord.new_value, AuditRecord.reason)
            .where(col(AuditRecord.action).startswith("data_")).order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
        assert trail == [
            ("data_freeze", None, None, "freeze", "interim analysis"),
            ("data_lock", None, None, "lock", "query on a secondary item"),
            ("data_release", None, "lock", None, "analysis done"),
            ("data_release", None, "freeze", None, "analysis done"),
        ]


def test_the_locks_page_asks_to_confirm_a_lock_over_open_queries(
    demo_engine: Engine, database_url: str, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", IC).saved
        factories.apply(session, zm001, QueryOpen(pk(subject), TARGET, "Date?"), by="monitor")
    with InProcessServer(database_url, zm001) as server:
        assert logged_in_client(server, "coordinator").get("/locks").status_code == 403
        page = logged_in_client(server, "datamanager")
        shown = page.get("/locks")
        assert "1 query is still open, answered or resolved" in shown.text
        assert "Lock although queries are open" in shown.text
        token = csrf_token(page, "/locks")
        refused = page.post("/locks", data={"csrftoken": token, "level": "lock", "reason": "x"})
        assert refused.status_code == 409 and "Close or cancel them first" in refused.text
        locked = page.post(
            "/locks",
            data={"csrftoken": token, "level": "lock", "reason": "final",
                  "confirm_open_queries": "true"},
            follow_redirects=True,
        )  # fmt: skip
        assert "Database locked</strong>" in locked.text and "(final)" in locked.text
        coordinator = logged_in_client(server, "coordinator")
        casebook = coordinator.get(f"/subjects/{subject.id}")
        assert "the whole study" in casebook.text

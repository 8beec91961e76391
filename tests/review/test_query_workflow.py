"""The query workflow through the write path: a monitor opens a query, the site answers, a
data manager or monitor closes, cancels or re-opens; each move allowed only from the states
that allow it, by the roles that may, audited under the person (both databases)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied
from app.crf.changes import NotFound, QueryAction, QueryChange, QueryOpen, QueryTarget
from app.models import AuditRecord, Query, QueryState, Subject, pk
from app.review.queries import QueryConflict, QueryRefused
from app.study.loader import Study
from tests import factories
from tests.checks.test_check_engine import crs

ICDAT = QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.ICDAT")


def move(
    session: Session, study: Study, subject: Subject, query: Query, action: QueryAction,
    text: str | None, by: str,
) -> Query:  # fmt: skip
    session.refresh(query)
    change = QueryChange(pk(subject), pk(query), query.version, action, text)
    factories.apply(session, study, change, by=by)
    session.refresh(query)
    return query


def test_a_manual_query_is_opened_answered_and_closed_by_the_people_allowed(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(
            session, zm001, subject, "F.IC", {"IG.IC": {1: {"ICDAT": "2026-01-10"}}}
        ).saved
        opened = QueryOpen(
            pk(subject), ICDAT, "  Please confirm the consent date against the ICF. "
        )
        with pytest.raises(AccessDenied):
            factories.apply(session, zm001, opened, by="coordinator")
        factories.apply(session, zm001, opened, by="monitor")
        query = session.exec(select(Query)).one()
        assert (query.state, query.text, query.check_id) == (
            "open",
            "Please confirm the consent date against the ICF.",
            None,
        )
        with pytest.raises(AccessDenied):
            move(session, zm001, subject, query, QueryAction.ANSWER, "Confirmed", "monitor")
        with pytest.raises(NotFound):  # another site's coordinator does not see the subject
            move(session, zm001, subject, query, QueryAction.ANSWER, "Confirmed", "coordinator2")
        with pytest.raises(QueryRefused, match="Give an answer"):
            move(session, zm001, subject, query, QueryAction.ANSWER, " ", "coordinator")
        query = move(
            session, zm001, subject, query, QueryAction.ANSWER, "Checked: 10 Jan.", "coordinator"
        )
        assert (query.state, query.response) == ("answered", "Checked: 10 Jan.")
        with pytest.raises(AccessDenied):
            move(session, zm001, subject, query, QueryAction.CLOSE, None, "coordinator")
        query = move(session, zm001, subject, query, QueryAction.CLOSE, None, "datamanager")
        assert query.state == QueryState.CLOSED
        with pytest.raises(QueryRefused, match="A query that is closed cannot be cancelled"):
            move(session, zm001, subject, query, QueryAction.CANCEL, "wrong", "monitor")
        query = move(
            session, zm001, subject, query, QueryAction.REOPEN, "The ICF says 11 Jan.", "monitor"
        )
        assert query.state == QueryState.OPEN
        stale = QueryChange(pk(subject), pk(query), query.version - 1, QueryAction.CANCEL, "x")
        with pytest.raises(QueryConflict):
            factories.apply(session, zm001, stale, by="monitor")

        trail = session.exec(
            select(AuditRecord.action, AuditRecord.username, AuditRecord.old_value,
                   AuditRecord.new_value, AuditRecord.reason, AuditRecord.details)
            .where(col(AuditRecord.action).like("query_%")).order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
        details = f"query {query.id}"
        assert trail == [
            (
                "query_open",
                "monitor",
                None,
                "open",
                "Please confirm the consent date against the ICF.",
                details,
            ),
            ("query_answer", "coordinator", "open", "answered", "Checked: 10 Jan.", details),
            ("query_close", "datamanager", "answered", "closed", None, details),
            ("query_reopen", "monitor", "closed", "open", "The ICF says 11 Jan.", details),
        ]


def test_an_open_query_is_closed_only_with_a_reason_and_a_query_on_a_missing_item_refused(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        factories.apply(session, zm001, QueryOpen(pk(subject), ICDAT, "Date?"), by="monitor")
        query = session.exec(select(Query)).one()
        with pytest.raises(QueryRefused, match="Give a reason"):
            move(session, zm001, subject, query, QueryAction.CLOSE, None, "monitor")
        nowhere = QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.NOPE")
        with pytest.raises(NotFound):
            factories.apply(session, zm001, QueryOpen(pk(subject), nowhere, "?"), by="monitor")
        visit = QueryTarget("SE.SCR")
        factories.apply(session, zm001, QueryOpen(pk(subject), visit, "Visit done?"), by="monitor")


def test_a_system_query_the_site_answered_with_text_waits_for_a_person_to_close_it(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.CRS", crs("2"), event="SE.LOG").saved
        query = session.exec(select(Query)).one()
        query = move(
            session, zm001, subject, query, QueryAction.ANSWER,
            "Grade 2: the patient was on oxygen at night", "coordinator",
        )  # fmt: skip
        assert factories.save(session, zm001, subject, "F.CRS", crs("1"), event="SE.LOG").saved
        session.refresh(query)
        assert query.state == QueryState.RESOLVED  # not closed by the system: the site wrote
        query = move(session, zm001, subject, query, QueryAction.CLOSE, None, "datamanager")
        assert query.state == QueryState.CLOSED

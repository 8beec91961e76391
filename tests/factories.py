"""Plain factory functions for tests: subjects, forms, visit dates and status changes made as a
demo account would make them, through the write path, each as its own unit of work."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from app import audit, auth
from app.access import load_access
from app.checks.batch import run_batch
from app.crf import reads, write
from app.crf.changes import (
    Change,
    FormEdit,
    FormNotDone,
    FormRef,
    FormValues,
    NewSubject,
    SubjectStatus,
    VisitDate,
)
from app.db import unit_of_work
from app.demo import DEMO_PASSWORD
from app.escalation.decisions import DecisionRequest, record_decision
from app.escalation.gates import DecisionKind
from app.models import Subject, UserAccount, pk, utcnow
from app.study.loader import Study

Rows = Mapping[str, Mapping[int, Mapping[str, str | list[str] | None]]]


def user(session: Session, username: str = "coordinator") -> UserAccount:
    return session.exec(select(UserAccount).where(UserAccount.username == username)).one()


def author(
    session: Session, username: str = "coordinator", source: str = "web", study_id: int = 1
) -> write.Author:
    """The demo account `username` working in the study `study_id` (ZM001 is study 1)."""
    account = user(session, username)
    return write.Author(load_access(session, account, study_id), audit.Actor(account, source))


def apply(
    session: Session,
    study: Study,
    change: Change,
    *,
    by: str = "coordinator",
    now: datetime | None = None,
) -> write.Outcome:
    """Make `change` as the demo account `by` and commit it (a refusal rolls back)."""
    with unit_of_work(session):
        by_author = author(session, by, study_id=study.id)
        return write.apply(session, study, change, by=by_author, now=now or utcnow())


def register(
    session: Session, study: Study, *, site_id: int = 1, by: str = "coordinator"
) -> Subject:
    return apply(session, study, NewSubject(site_id), by=by).subject


def stored_version(session: Session, subject: Subject, study: Study, ref: FormRef) -> int:
    stored = reads.load_form(session, subject, study.form(ref.form_oid), ref)
    return stored.form_data.version if stored else 0


def save(
    session: Session,
    study: Study,
    subject: Subject,
    form_oid: str,
    rows: Rows,
    *,
    event: str = "SE.SCR",
    event_repeat: int = 1,
    repeat: int = 1,
    complete: bool = False,
    reason: str | None = None,
    version: int | None = None,
    by: str = "coordinator",
    now: datetime | None = None,
) -> write.Outcome:
    """Save `rows` of a form (at its stored version unless `version` is given)."""
    ref = FormRef(event, event_repeat, form_oid, repeat)
    base = stored_version(session, subject, study, ref) if version is None else version
    edit = FormEdit(rows, base_version=base, complete=complete, reason=reason)
    return apply(session, study, FormValues(pk(subject), ref, edit), by=by, now=now)


def not_done(
    session: Session,
    study: Study,
    subject: Subject,
    form_oid: str,
    reason: str | None,
    *,
    event: str = "SE.SCR",
    by: str = "coordinator",
) -> write.Outcome:
    ref = FormRef(event, 1, form_oid, 1)
    change = FormNotDone(pk(subject), ref, stored_version(session, subject, study, ref), reason)
    return apply(session, study, change, by=by)


def date_visit(
    session: Session,
    study: Study,
    subject: Subject,
    event: str,
    day: date,
    *,
    repeat: int = 1,
    reason: str | None = None,
    by: str = "coordinator",
    now: datetime | None = None,
) -> write.Outcome:
    change = VisitDate(pk(subject), event, repeat, day, reason)
    return apply(session, study, change, by=by, now=now)


def move(
    session: Session,
    study: Study,
    subject: Subject,
    to: str,
    day: date,
    *,
    dose_level: str | None = None,
    phase: str | None = None,
    by: str = "coordinator",
) -> write.Outcome:
    change = SubjectStatus(pk(subject), to, day, None, dose_level, phase)
    return apply(session, study, change, by=by)


def api_token(session: Session, username: str, name: str = "test") -> str:
    """A new personal API token of the demo account `username` (its secret)."""
    with unit_of_work(session):
        _, secret = auth.create_api_token(
            session, user=user(session, username), name=name, now=utcnow()
        )
    return secret


def run_batch_checks(session: Session, study: Study, subject: Subject) -> list[str]:
    """Run every check on the subject in batch (as the data manager's batch run does, in its
    own transaction, once the session's is ended); the ids of the checks that found something."""
    session.commit()
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    report = run_batch(
        engine, study, subject_key=subject.subject_key, actor=audit.Actor(None, "cli")
    )
    return sorted(finding["check"] for finding in report.findings)


def open_level(
    session: Session, study: Study, level: str, on: date, *, by: str = "sponsor"
) -> None:
    """Record the board's decision to open `level` on `on`, overriding the rules (a test's
    subjects start at any level; `app.escalation.decisions`)."""
    with unit_of_work(session):
        access = load_access(session, user(session, by), study.id)
        request = DecisionRequest(
            DecisionKind.ESCALATE, (level,), on, "Opened for the test.", DEMO_PASSWORD,
            override_reason="The test starts at this level.",
        )  # fmt: skip
        record_decision(session, study, access, request, source="test", now=utcnow())

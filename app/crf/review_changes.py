"""The write path's plans of review changes, which change no clinical value: queries opened,
moved or restored by an import, freezes and locks (of a subject, or of the whole study: the
database lock), source data verifications and signatures. `app.crf.write.apply` authorises,
loads and guards them like any change, then persists and audits what these plans return."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from app import audit
from app.access import Access, AccessDenied, Permission
from app.crf import persist
from app.crf.changes import (
    DataLockRelease,
    DataLockSet,
    ImportedQuery,
    QueryChange,
    QueryOpen,
    Sign,
    StudyChange,
    StudyLockSet,
    VerifyForm,
    WithdrawVerification,
)
from app.crf.plan_audit import study_lock_entry
from app.crf.plans import Plan
from app.crf.reads import StoredForm
from app.models import DataLock, LockLevel, Query, Subject
from app.review.locks import LockPlace, plan_lock, plan_release
from app.review.queries import plan_query_change, plan_query_open
from app.review.query_import import plan_imported_query
from app.review.signatures import plan_signing
from app.review.study_lock import plan_study_lock, plan_study_release
from app.review.verification import plan_verify, plan_withdraw
from app.study.loader import Study

ReviewChange = (
    QueryOpen | QueryChange | ImportedQuery | DataLockSet | DataLockRelease | VerifyForm
    | WithdrawVerification | Sign
)  # fmt: skip


def plan_review(
    session: Session,
    study: Study,
    subject: Subject,
    change: ReviewChange,
    actor: audit.Actor,
    *,
    importing: bool,
    query: Query | None,
    stored: StoredForm | None,
    locks: list[DataLock],
    now: datetime,
) -> Plan:
    """The plan of a review change to `subject`'s casebook (the query a QueryChange moves
    and the stored form a verification reads come from the load step; `locks` are the
    subject's, from the guard step). Raises a Refused naming what is wrong."""
    match change:
        case QueryOpen():
            return Plan(subject, queries=[plan_query_open(study, subject, change)])
        case QueryChange():
            assert query is not None
            return Plan(subject, queries=[plan_query_change(query, change)])
        case ImportedQuery():
            restored = plan_imported_query(session, study, subject, change)
            return Plan(subject, queries=[restored] if restored else [])
        case DataLockSet():
            place = LockPlace(
                change.event_oid, change.event_repeat, change.form_oid, change.form_repeat
            )
            level = LockLevel(change.level)
            name = actor.printed_name
            if importing and change.set_by_name:
                name = change.set_by_name
            lock = plan_lock(locks, subject, place, level, change.reason, name)
            lock.set_at = change.set_at if importing else None
            return Plan(subject, locks=[lock])
        case DataLockRelease():
            return Plan(
                subject, locks=[plan_release(session, subject, change.lock_id, change.reason)]
            )
        case VerifyForm():
            verify = plan_verify(
                session, study, subject, change.ref, stored, change.base_version,
                actor.printed_name,
            )  # fmt: skip
            return Plan(subject, verifications=verify)
        case WithdrawVerification():
            name = actor.printed_name
            withdraw = plan_withdraw(session, subject, change.ref, change.reason, name)
            return Plan(subject, verifications=withdraw)
        case Sign():
            assert actor.user is not None  # the SIGN permission is a person's
            signing = plan_signing(session, study, subject, change, actor.user, now)
            return Plan(subject, signatures=[signing])


def apply_to_study(
    session: Session, study: Study, change: StudyChange, access: Access, actor: audit.Actor,
    now: datetime,
) -> Plan:  # fmt: skip
    """The database freeze, lock or release, authorised study-wide (a data manager of one site
    cannot lock the others'), planned, persisted and audited; returns what it did."""
    if access.site_ids(Permission.LOCK_DATA) is not None:
        raise AccessDenied("only a study-wide data manager freezes or locks the study")
    if isinstance(change, StudyLockSet):
        lock_plan = plan_study_lock(session, study.id, change, actor.printed_name)
    else:
        lock_plan = plan_study_release(session, study.id, change)
    user_id = actor.user.id if actor.user else None
    persist.write_locks(session, [lock_plan], user_id=user_id, now=now)
    audit.record_all(session, [study_lock_entry(study.id, lock_plan, actor, now)])
    return Plan(None, locks=[lock_plan])

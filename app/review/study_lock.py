"""The database lock: a data manager freezes or locks the whole study.

A study freeze or lock covers every subject (`app.review.locks.active_locks` returns it with
the subject's own); it is a `DataLock` row without a subject. Locking the database while
queries are still open (open, answered or resolved) is refused unless the data manager
confirms it with a reason, as the people who review the lock later will ask why.
"""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from app.crf.changes import NotFound, StudyLockRelease, StudyLockSet
from app.models import DataLock, LockLevel, Query
from app.review.locks import DataLocked, LockPlan, describe
from app.review.query_reads import OPEN_STATES


def study_locks(session: Session, study_id: int) -> list[DataLock]:
    """The study-wide freezes and locks in force (at most one of each level)."""
    return list(
        session.exec(
            select(DataLock).where(
                DataLock.study_id == study_id,
                col(DataLock.subject_id).is_(None),
                col(DataLock.released_at).is_(None),
            )
        )
    )


def open_query_count(session: Session, study_id: int) -> int:
    """Queries of the study that still wait for someone (open, answered or resolved)."""
    count = session.exec(
        select(func.count())
        .select_from(Query)
        .where(col(Query.study_id) == study_id, col(Query.state).in_(OPEN_STATES))
    ).one()
    return int(count)


def plan_study_lock(
    session: Session, study_id: int, change: StudyLockSet, set_by_name: str
) -> LockPlan:
    """A new study freeze or lock; refused when one as strong is in force, and a lock while
    queries are open unless confirmed with a reason."""
    level = LockLevel(change.level)
    for lock in study_locks(session, study_id):
        if lock.level == LockLevel.LOCK or lock.level == level:
            raise DataLocked(f"Already covered: {describe(lock)}")
    reason = (change.reason or "").strip() or None
    if level == LockLevel.LOCK:
        waiting = open_query_count(session, study_id)
        if waiting and not (change.confirm_open_queries and reason):
            raise DataLocked(
                f"{waiting} {'query is' if waiting == 1 else 'queries are'} still open, "
                "answered or resolved. Close or cancel them first, or confirm the database "
                "lock with a reason."
            )
    return LockPlan(
        DataLock(study_id=study_id, level=level, reason=reason, set_by_name=set_by_name)
    )


def plan_study_release(session: Session, study_id: int, change: StudyLockRelease) -> LockPlan:
    """Release the study's freeze or lock; a reason is required."""
    lock = session.get(DataLock, change.lock_id)
    if (
        lock is None
        or lock.study_id != study_id
        or lock.subject_id is not None
        or lock.released_at is not None
    ):
        raise NotFound(f"study lock {change.lock_id}")
    if not (change.reason and change.reason.strip()):
        raise DataLocked("Give a reason for releasing it.")
    return LockPlan(lock, release_reason=change.reason.strip())

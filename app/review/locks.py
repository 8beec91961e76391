"""Freeze and lock: a data manager stops changes to a form, a visit or a subject's casebook.

A freeze stops data changes (values, not done, visit dates, status) while queries and
verification go on; a lock stops everything. Each is released only by a data manager, with
a reason. The write path's guard step asks `refusal` before any change, and again for the
forms a change would re-derive, so that nothing reaches frozen or locked data by any channel
(pages, API, import, command line).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import Session, col, or_, select

from app.crf.changes import FormRef, NotFound, Refused
from app.models import DataLock, LockLevel, Subject


class DataLocked(Refused):
    """A change to frozen or locked data; the message says what, by whom, since when."""


@dataclass(frozen=True)
class LockPlace:
    """What a lock covers: the subject's casebook (no event), a visit (no form) or a form."""

    event_oid: str | None = None
    event_repeat: int | None = None
    form_oid: str | None = None
    form_repeat: int | None = None

    @classmethod
    def of(cls, ref: FormRef) -> LockPlace:
        return cls(ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)


@dataclass
class LockPlan:
    """A lock to set (`lock.id` None) or to release."""

    lock: DataLock
    release_reason: str | None = None
    set_at: datetime | None = None
    """When the source system set a lock an import restores (else: now)."""


_ACTIVE_LOCKS = select(DataLock).where(
    col(DataLock.study_id) == bindparam("study_id"),
    or_(col(DataLock.subject_id) == bindparam("subject_id"), col(DataLock.subject_id).is_(None)),
    col(DataLock.released_at).is_(None),
)
"""Built once: every save runs it (building a statement costs more than running it)."""


def active_locks(session: Session, subject: Subject) -> list[DataLock]:
    """The freezes and locks in force on the subject (its own and the study's)."""
    params = {"study_id": subject.study_id, "subject_id": subject.id}
    return list(session.exec(_ACTIVE_LOCKS, params=params))


def covers(lock: DataLock, place: LockPlace) -> bool:
    """Whether `lock` covers `place` (a lock on a visit covers its forms, and so on)."""
    if lock.event_oid is None:
        return True
    if (lock.event_oid, lock.event_repeat) != (place.event_oid, place.event_repeat):
        return False
    return lock.form_oid is None or (lock.form_oid, lock.form_repeat) == (
        place.form_oid, place.form_repeat,
    )  # fmt: skip


def strongest(locks: list[DataLock], place: LockPlace) -> DataLock | None:
    """The lock covering `place` if there is one, else the freeze covering it, else None."""
    covering = [lock for lock in locks if covers(lock, place)]
    return min(covering, key=lambda lock: lock.level != LockLevel.LOCK, default=None)


def refusal(
    locks: list[DataLock], place: LockPlace, *, queries_only: bool = False
) -> DataLocked | None:
    """Why a change at `place` is refused, or None: any freeze or lock covering it refuses a
    data change; only a lock refuses a change to review data, queries and source data
    verification (`queries_only`)."""
    for lock in sorted(locks, key=lambda lock: lock.level != LockLevel.LOCK):
        if covers(lock, place) and (not queries_only or lock.level == LockLevel.LOCK):
            return DataLocked(describe(lock))
    return None


def describe(lock: DataLock) -> str:
    what = (
        "The study" if lock.subject_id is None
        else "This subject's casebook" if lock.event_oid is None
        else "This visit" if lock.form_oid is None
        else "This form"
    )  # fmt: skip
    state = "locked" if lock.level == LockLevel.LOCK else "frozen"
    since = lock.set_at.strftime("%Y-%m-%d %H:%M UTC")
    reason = f" ({lock.reason})" if lock.reason else ""
    allowed = "" if lock.level == LockLevel.LOCK else " Queries can still be answered."
    return (
        f"{what} is {state} by {lock.set_by_name} since {since}{reason}: nothing in it can be "
        f"changed until a data manager releases it.{allowed}"
    )


def plan_lock(
    locks: list[DataLock], subject: Subject, place: LockPlace, level: LockLevel, reason: str | None,
    set_by_name: str,
) -> LockPlan:  # fmt: skip
    """A new freeze or lock on `place`; refused when one as strong already covers it."""
    for lock in locks:
        if covers(lock, place) and (lock.level == LockLevel.LOCK or lock.level == level):
            raise DataLocked(f"Already covered: {describe(lock)}")
    return LockPlan(
        DataLock(
            study_id=subject.study_id, subject_id=subject.id, event_oid=place.event_oid,
            event_repeat=place.event_repeat, form_oid=place.form_oid,
            form_repeat=place.form_repeat, level=level, reason=reason, set_by_name=set_by_name,
        )
    )  # fmt: skip


def plan_release(session: Session, subject: Subject, lock_id: int, reason: str | None) -> LockPlan:
    """Release one of the subject's freezes or locks; a reason is required."""
    lock = session.get(DataLock, lock_id)
    if lock is None or lock.subject_id != subject.id or lock.released_at is not None:
        raise NotFound(f"lock {lock_id}")
    if not (reason and reason.strip()):
        raise DataLocked("Give a reason for releasing it.")
    return LockPlan(lock, release_reason=reason.strip())

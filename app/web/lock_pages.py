"""The data manager's freeze, lock and release, posted from the casebook and the form page,
and the database lock page (`/locks`: the study's freeze or lock, and every freeze and lock
in force). Each goes through the write path (`app.crf.write.apply`), which checks the
permission."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from sqlmodel import col, select

from app.access import Access, Permission
from app.crf.changes import (
    DataLockRelease,
    DataLockSet,
    StudyLockRelease,
    StudyLockSet,
)
from app.models import DataLock, LockLevel, Subject
from app.review.study_lock import open_query_count, study_locks
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render
from app.web.query_pages import local_path
from app.web.review_posts import apply_and_go_back

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
LockerDep = Annotated[Access, requires(Permission.LOCK_DATA)]
SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
Reason = Annotated[str, Form(max_length=500)]
Oid = Annotated[str, Form(max_length=60)]
Repeat = Annotated[int, Form(ge=1, le=9999)]


@router.get("/locks")
def locks_page(
    request: Request, session: SessionDep, study: StudyDep, access: LockerDep
) -> Response:
    """The study's freeze or lock with its controls, and the subjects' freezes and locks."""
    in_force = session.exec(
        select(DataLock, Subject)
        .join(Subject, col(Subject.id) == col(DataLock.subject_id))
        .where(col(DataLock.study_id) == study.id, col(DataLock.released_at).is_(None))
        .order_by(col(Subject.subject_key), col(DataLock.set_at))
    ).all()
    context = {
        "access": access,
        "study_locks": study_locks(session, study.id),
        "subject_locks": in_force,
        "open_queries": open_query_count(session, study.id),
        "study_wide": access.site_ids(Permission.LOCK_DATA) is None,
    }
    return render(request, "locks.html", context)


@router.post("/locks")
def set_study_lock(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: LockerDep,
    level: Annotated[LockLevel, Form()],
    reason: Reason = "",
    confirm_open_queries: Annotated[bool, Form()] = False,
) -> Response:
    """Freeze or lock the whole study (a lock with open queries needs confirming)."""
    change = StudyLockSet(level, reason.strip() or None, confirm_open_queries)
    return apply_and_go_back(request, session, study, access, change, "/locks#locks-title")


@router.post("/locks/{lock_id}/release")
def release_study_lock(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: LockerDep,
    lock_id: Annotated[int, PathParam(ge=1, le=2**62)],
    reason: Reason = "",
) -> Response:
    change = StudyLockRelease(lock_id, reason)
    return apply_and_go_back(request, session, study, access, change, "/locks#locks-title")


@router.post("/subjects/{subject_id}/locks")
def set_lock(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: LockerDep,
    subject_id: SubjectId,
    level: Annotated[LockLevel, Form()],
    reason: Reason = "",
    event_oid: Oid = "",
    event_repeat: Repeat = 1,
    form_oid: Oid = "",
    form_repeat: Repeat = 1,
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Freeze or lock the casebook, or (with `event_oid` and `form_oid`) one form."""
    change = DataLockSet(
        subject_id, level, reason.strip() or None, event_oid or None,
        event_repeat if event_oid else None, form_oid or None, form_repeat if form_oid else None,
    )  # fmt: skip
    back = local_path(next, f"/subjects/{subject_id}")
    return apply_and_go_back(request, session, study, access, change, back + "#locks-title")


@router.post("/subjects/{subject_id}/locks/{lock_id}/release")
def release_lock(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: LockerDep,
    subject_id: SubjectId,
    lock_id: Annotated[int, PathParam(ge=1, le=2**62)],
    reason: Reason = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    change = DataLockRelease(subject_id, lock_id, reason)
    back = local_path(next, f"/subjects/{subject_id}")
    return apply_and_go_back(request, session, study, access, change, back + "#locks-title")

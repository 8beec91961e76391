"""The persist step of the write path: the only code that inserts, updates or deletes rows of
the clinical tables (subject, study_event_data, form_data, item_group_data, item_data,
status_alert, query, data_lock, source_verification, signature). `app.crf.write.apply` calls `persist` with a checked plan; a test instruments
the database to prove that nothing else writes these tables.

Nothing here commits or rolls back: a concurrent change that got there first raises
(SaveConflict, StatusRefused, FormRefused) and the caller's unit of work rolls back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.crf.changes import FormRefused, SaveConflict, StatusRefused, SubjectKeyTaken
from app.crf.plans import AlertPlan, FormPlan, Plan, StatusPlan, SubjectPlan, VisitPlan
from app.models import (
    FormData,
    ItemData,
    ItemGroupData,
    Site,
    StatusAlert,
    StudyEventData,
    Subject,
    pk,
)
from app.review.locks import LockPlan
from app.review.signatures import SignaturePlan
from app.review.system_queries import QueryPlan
from app.review.verification import VerificationPlan


def persist(session: Session, plan: Plan, *, user_id: int | None, now: datetime) -> Subject:
    """Write `plan` in the session's transaction (its status alerts are the consequences
    step's, `write_alerts`); returns the subject, new or changed."""
    subject = plan.subject
    if plan.new_subject is not None:
        subject = _add_subject(session, plan.new_subject, user_id, now)
        plan.subject = subject
    assert subject is not None
    if plan.visit is not None:
        _date_visit(session, subject, plan.visit, now)
    for form_plan in plan.forms:
        _write_form(session, subject, form_plan, user_id, now)
    if plan.status is not None:
        _set_status(session, subject, plan.status)
    write_locks(session, plan.locks, user_id=user_id, now=now)
    write_signatures(session, plan.signatures, now=now)
    if plan.queries:
        for query_plan in plan.queries:
            if query_plan.query.id is None:
                query_plan.query.opened_by_id = user_id
        write_queries(session, plan.queries, now=now)
    write_verifications(session, plan.verifications, user_id=user_id, now=now)
    return subject


def _add_subject(session: Session, new: SubjectPlan, user_id: int | None, now: datetime) -> Subject:
    """Insert the subject; the next screening number comes from the site's counter, which
    the database increments, so concurrent server processes never hand out the same one."""
    key = new.subject_key
    if key is None:
        number = session.execute(
            update(Site)
            .where(col(Site.id) == new.site_id)
            .values(next_subject_number=Site.next_subject_number + 1)
            .returning(col(Site.next_subject_number), col(Site.number))
        ).one()
        key = f"{number[1]}-{number[0] - 1:03d}"
    else:
        site = session.get(Site, new.site_id)
        assert site is not None
        prefix, _, digits = key.partition("-")
        if prefix == site.number and digits.isdigit():  # keep register's numbers ahead of it
            session.execute(
                update(Site)
                .where(col(Site.id) == site.id, col(Site.next_subject_number) <= int(digits))
                .values(next_subject_number=int(digits) + 1)
            )
    subject = Subject(
        study_id=new.study_id, site_id=new.site_id, subject_key=key, status=new.status, created_at=now,
        created_by_id=user_id,
    )  # fmt: skip
    session.add(subject)
    try:
        session.flush()
    except IntegrityError as error:
        raise SubjectKeyTaken(f"a subject {key} already exists") from error
    return subject


def _date_visit(session: Session, subject: Subject, visit: VisitPlan, now: datetime) -> None:
    event = visit.event
    if event is None:
        event = StudyEventData(
            subject_id=pk(subject), event_oid=visit.event_oid, repeat_key=visit.event_repeat,
            created_at=now,
        )  # fmt: skip
    event.visit_date = visit.new
    session.add(event)
    try:
        session.flush()
    except IntegrityError as error:
        raise FormRefused(
            "Someone else dated this visit meanwhile; reload the casebook."
        ) from error


def _write_form(
    session: Session, subject: Subject, plan: FormPlan, user_id: int | None, now: datetime
) -> None:
    if plan.stored is None:
        form_data_id = pk(_create_form_data(session, subject, plan, user_id, now))
        group_ids: dict[tuple[str, int], int] = {}
        item_ids: dict[tuple[int, str], int] = {}
    else:
        form_data_id = pk(plan.stored.form_data)  # read before the bump expires the row
        group_ids, item_ids = dict(plan.stored.group_ids), plan.stored.item_ids
        _bump_version(session, plan, user_id, now)
    _write_items(session, form_data_id, plan, group_ids, item_ids)


def _create_form_data(
    session: Session, subject: Subject, plan: FormPlan, user_id: int | None, now: datetime
) -> FormData:
    event = session.exec(
        select(StudyEventData).where(
            StudyEventData.subject_id == subject.id,
            StudyEventData.event_oid == plan.ref.event_oid,
            StudyEventData.repeat_key == plan.ref.event_repeat,
        )
    ).first()
    try:
        if event is None:
            event = StudyEventData(
                subject_id=pk(subject), event_oid=plan.ref.event_oid,
                repeat_key=plan.ref.event_repeat, created_at=now,
            )  # fmt: skip
            session.add(event)
            session.flush()
        form_data = FormData(
            study_event_id=pk(event), form_oid=plan.form.oid, repeat_key=plan.ref.form_repeat,
            status=plan.status, not_done_reason=plan.not_done_reason,
            definition_version=plan.definition_version, updated_at=now, updated_by_id=user_id,
        )  # fmt: skip
        session.add(form_data)
        session.flush()
    except IntegrityError as error:  # another process created the same form meanwhile
        raise SaveConflict(plan.new_version, []) from error
    return form_data


_FORM_DATA = FormData.__table__  # type: ignore[attr-defined]
_BUMP_VERSION = (
    update(_FORM_DATA)
    .where(_FORM_DATA.c.id == bindparam("form_id"))
    .where(_FORM_DATA.c.version == bindparam("base_version"))
    .values(
        version=bindparam("new_version"),
        status=bindparam("new_status"),
        not_done_reason=bindparam("new_not_done_reason"),
        definition_version=bindparam("definition_version"),
        updated_at=bindparam("now"),
        updated_by_id=bindparam("user_id"),
    )
)
"""Statements on the save path are built once (building one costs more than running it)."""


def _bump_version(session: Session, plan: FormPlan, user_id: int | None, now: datetime) -> None:
    """Advance the optimistic lock; a concurrent save that got there first makes this fail."""
    assert plan.stored is not None
    result = session.execute(
        _BUMP_VERSION,
        {
            "form_id": plan.stored.form_data.id, "base_version": plan.base_version,
            "new_version": plan.new_version, "new_status": plan.status,
            "new_not_done_reason": plan.not_done_reason,
            "definition_version": plan.definition_version, "now": now, "user_id": user_id,
        },
    )  # fmt: skip
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise SaveConflict(plan.new_version, [])


_ITEM_DATA = ItemData.__table__  # type: ignore[attr-defined]
_INSERT_ITEMS = insert(_ITEM_DATA)
_UPDATE_ITEMS = (
    update(_ITEM_DATA)
    .where(_ITEM_DATA.c.id == bindparam("item_id"))
    .values(value=bindparam("new_value"))
)
_DELETE_ITEMS = delete(_ITEM_DATA).where(_ITEM_DATA.c.id.in_(bindparam("item_ids", expanding=True)))


def _write_items(
    session: Session,
    form_data_id: int,
    plan: FormPlan,
    group_ids: dict[tuple[str, int], int],
    item_ids: dict[tuple[int, str], int],
) -> None:
    """Apply the plan's value changes as at most three bulk statements, using the row ids read
    with the form (the optimistic lock guarantees nobody changed them since)."""
    missing = sorted({(c.group_oid, c.repeat) for c in plan.changes} - set(group_ids))
    new_groups = [
        ItemGroupData(form_data_id=form_data_id, item_group_oid=group_oid, repeat_key=repeat)
        for group_oid, repeat in missing
    ]
    if new_groups:
        session.add_all(new_groups)
        session.flush()  # the new rows' ids are needed by their items
        group_ids.update({(g.item_group_oid, g.repeat_key): pk(g) for g in new_groups})
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    removals: list[int] = []
    for change in plan.changes:
        group_id = group_ids[(change.group_oid, change.repeat)]
        item_id = item_ids.get((group_id, change.item_oid))
        if change.new is None:
            if item_id is not None:
                removals.append(item_id)
        elif item_id is None:
            inserts.append(
                {"item_group_data_id": group_id, "item_oid": change.item_oid, "value": change.new}
            )
        else:
            updates.append({"item_id": item_id, "new_value": change.new})
    if inserts:
        session.execute(_INSERT_ITEMS, inserts)
    if updates:
        session.execute(_UPDATE_ITEMS, updates)
    if removals:
        session.execute(_DELETE_ITEMS, {"item_ids": removals})


def _set_status(session: Session, subject: Subject, plan: StatusPlan) -> None:
    """Move the subject's status from the one the change was checked against."""
    values: dict[str, Any] = {"status": plan.new, "status_date": plan.effective}
    if plan.dose_level is not None or plan.phase is not None:
        values |= {"dose_level": plan.dose_level, "phase": plan.phase}
    result = session.execute(
        update(Subject)
        .where(col(Subject.id) == subject.id, col(Subject.status) == plan.old)
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StatusRefused("Someone else changed this subject's status meanwhile; reload.")
    session.refresh(subject)


def write_alerts(
    session: Session,
    subject: Subject,
    alerts: list[AlertPlan],
    *,
    user_id: int | None,
    now: datetime,
) -> None:
    """Open or close the subject's status alerts (the write path's consequences step)."""
    for plan in alerts:
        if plan.alert is None:
            session.add(
                StatusAlert(
                    subject_id=pk(subject),
                    status=plan.status,
                    requirement=plan.requirement,
                    opened_at=now,
                    opened_by_id=user_id,
                )
            )
        else:
            plan.alert.closed_at = now
            plan.alert.closed_by_id = user_id
            session.add(plan.alert)
    session.flush()


def write_queries(session: Session, plans: list[QueryPlan], *, now: datetime) -> None:
    """Insert the new queries and move the others to the state of their last transition,
    with the site's response (each update bumps the query's version)."""
    for plan in plans:
        query = plan.query
        query.state = plan.transitions[-1].new
        query.updated_at = now
        if plan.response is not None:
            query.response = plan.response
        if query.id is None:
            query.opened_at = plan.opened_at or now
        else:
            query.version += 1
        session.add(query)
    if plans:
        session.flush()


def write_locks(
    session: Session, plans: list[LockPlan], *, user_id: int | None, now: datetime
) -> None:
    """Set the new freezes and locks; release the others."""
    for plan in plans:
        lock = plan.lock
        if lock.id is None:
            lock.set_at, lock.set_by_id = plan.set_at or now, user_id
        else:
            lock.released_at, lock.released_by_id = now, user_id
            lock.release_reason = plan.release_reason
        session.add(lock)
    if plans:
        session.flush()


def write_verifications(
    session: Session, plans: list[VerificationPlan], *, user_id: int | None, now: datetime
) -> None:
    """Store the new source data verifications; end the others (withdrawn or dropped)."""
    for plan in plans:
        row, end = plan.row, plan.end
        if end is None:
            row.verified_at, row.verified_by_id = now, user_id
        else:
            row.ended_at, row.ended_by_id, row.ended_by_name = now, user_id, end.by_name
            row.end_reason = end.reason
            row.changed_items = ",".join(end.changed_items) or None
            row.changed_in_version = end.changed_in_version
        session.add(row)
    if plans:
        session.flush()


def write_signatures(session: Session, plans: list[SignaturePlan], *, now: datetime) -> None:
    """Store new signatures (noting a login session's first signing) and the broken ones."""
    for plan in plans:
        session.add(plan.signature)
        if plan.first_in_session is not None:
            plan.first_in_session.signed_at = now
            session.add(plan.first_in_session)
    if plans:
        session.flush()

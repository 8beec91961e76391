"""Subjects, casebooks and form saving. Each public write function is one transaction: it
commits on success and leaves the database untouched when it raises or returns errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app import audit
from app.access import Access, Permission
from app.crf.engine import (
    FieldKey,
    FormEvaluation,
    RawRows,
    Rows,
    evaluate_form,
    referenced_forms,
)
from app.models import (
    AuditRecord,
    FormData,
    FormStatus,
    ItemData,
    ItemGroupData,
    Site,
    StudyEventData,
    Subject,
    pk,
)
from app.study.loader import Study
from app.study.model import FormDef


class NotFound(Exception):
    """Absent, or not visible to this user: both get the same answer."""


@dataclass
class SaveConflict(Exception):
    """The form changed since the user opened it; `changes` lists (label, saved, submitted)."""

    current_version: int
    changes: list[tuple[str, str | None, str | None]]

    def __str__(self) -> str:
        return (
            "Someone else saved this form after you opened it (now version "
            f"{self.current_version}). Nothing of yours was saved; review their changes and "
            "enter yours again."
        )


@dataclass
class SaveOutcome:
    """What a save did: the evaluation (with errors if nothing was stored) and the new version."""

    evaluation: FormEvaluation
    saved: bool
    version: int
    status: str
    changed: int = 0


# -- subjects ---------------------------------------------------------------------------------


def register_subject(
    session: Session, study: Study, *, access: Access, site_id: int, actor: audit.Actor
) -> Subject:
    """Create a subject at a site with the next screening number (`<site>-<NNN>`). Commits.

    The counter is incremented in the database, so concurrent server processes never hand out
    the same number.
    """
    access.require(Permission.REGISTER_SUBJECT, site_id)
    number = session.execute(
        update(Site)
        .where(col(Site.id) == site_id)
        .values(next_subject_number=Site.next_subject_number + 1)
        .returning(col(Site.next_subject_number), col(Site.number))
    ).first()
    if number is None:
        raise NotFound(f"site {site_id}")
    next_number, site_number = number
    subject = _new_subject(
        session, study, site_id=site_id, subject_key=f"{site_number}-{next_number - 1:03d}",
        actor=actor,
    )  # fmt: skip
    session.commit()
    session.refresh(subject)
    return subject


class SubjectKeyTaken(Exception):
    """A subject with this SubjectKey already exists."""


def add_subject_with_key(
    session: Session, study: Study, *, site: Site, subject_key: str, actor: audit.Actor
) -> Subject:
    """Create a subject under a key given by another system (an ODM import keeps the source's
    SubjectKey), in the caller's transaction; audited. The caller checks permissions.

    Raises SubjectKeyTaken when the key exists. A key in this site's screening-number form
    (`<site>-<NNN>`) moves the site's counter past it, so register_subject never hands it out.
    """
    if session.exec(select(Subject.id).where(Subject.subject_key == subject_key)).first():
        raise SubjectKeyTaken(subject_key)
    prefix, _, number = subject_key.partition("-")
    if prefix == site.number and number.isdigit():
        session.execute(
            update(Site)
            .where(col(Site.id) == site.id, col(Site.next_subject_number) <= int(number))
            .values(next_subject_number=int(number) + 1)
        )
    return _new_subject(session, study, site_id=pk(site), subject_key=subject_key, actor=actor)


def _new_subject(
    session: Session, study: Study, *, site_id: int, subject_key: str, actor: audit.Actor
) -> Subject:
    """Add a subject at the start of the study's path, with its audit record (no commit)."""
    subject = Subject(
        site_id=site_id,
        subject_key=subject_key,
        status=study.subject_path.initial,
        created_by_id=actor.user.id if actor.user else None,
    )
    session.add(subject)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="subject_create",
        path=audit.DataPath(subject),
        new_value=subject.subject_key,
    )
    return subject


def list_subjects(session: Session, access: Access) -> list[tuple[Subject, Site]]:
    sites = access.site_ids(Permission.VIEW_SUBJECTS)
    statement = select(Subject, Site).join(Site, col(Site.id) == Subject.site_id)
    if sites is not None:
        statement = statement.where(col(Subject.site_id).in_(sites))
    return list(session.exec(statement.order_by(col(Subject.subject_key))).all())


_SUBJECT = select(Subject).where(col(Subject.id) == bindparam("subject_id"))


def get_subject(session: Session, access: Access, subject_id: int) -> Subject:
    """The subject if this user may see it; NotFound otherwise (never says which)."""
    subject = session.exec(_SUBJECT, params={"subject_id": subject_id}).first()
    if subject is None or not access.can(Permission.VIEW_SUBJECTS, subject.site_id):
        raise NotFound(f"subject {subject_id}")
    return subject


# -- reading forms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredForm:
    """A saved form's values, with the row ids a save needs to change them in place."""

    form_data: FormData
    rows: Rows
    group_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    item_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    """(item group row id, item OID) -> item row id"""


_FORM_AT = (
    select(FormData)
    .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
    .where(
        col(StudyEventData.subject_id) == bindparam("subject_id"),
        col(StudyEventData.event_oid) == bindparam("event_oid"),
        col(StudyEventData.repeat_key) == bindparam("event_repeat"),
        col(FormData.form_oid) == bindparam("form_oid"),
        col(FormData.repeat_key) == bindparam("form_repeat"),
    )
)
_GROUPS = ItemGroupData.__table__  # type: ignore[attr-defined]
_ITEM_DATA = ItemData.__table__  # type: ignore[attr-defined]
_FORM_VALUES = (
    sa_select(
        _GROUPS.c.id, _GROUPS.c.item_group_oid, _GROUPS.c.repeat_key,
        _ITEM_DATA.c.id, _ITEM_DATA.c.item_oid, _ITEM_DATA.c.value,
    )
    .outerjoin(_ITEM_DATA, _ITEM_DATA.c.item_group_data_id == _GROUPS.c.id)
    .where(_GROUPS.c.form_data_id == bindparam("form_data_id"))
)  # fmt: skip
"""Statements that every form page and save runs are built once (building one costs more
than running it); `bindparam` names are filled at each call."""


def load_form(
    session: Session,
    subject: Subject,
    study_form: FormDef,
    *,
    event_oid: str,
    event_repeat: int,
    form_repeat: int,
) -> StoredForm | None:
    form_data = session.exec(
        _FORM_AT,
        params={
            "subject_id": subject.id, "event_oid": event_oid, "event_repeat": event_repeat,
            "form_oid": study_form.oid, "form_repeat": form_repeat,
        },
    ).first()  # fmt: skip
    if form_data is None:
        return None
    return _stored_form(session, form_data, study_form)


def _item_names(form: FormDef) -> dict[str, str]:
    return {item.oid: item.name for group in form.item_groups for item in group.items}


def _stored_form(session: Session, form_data: FormData, form: FormDef) -> StoredForm:
    """Stored values of a form in one query; values of items no longer defined are left out."""
    names = _item_names(form)
    stored = StoredForm(form_data, {})
    rows = session.execute(_FORM_VALUES, {"form_data_id": form_data.id})
    for group_id, group_oid, repeat_key, item_id, item_oid, value in rows:
        stored.group_ids[(group_oid, repeat_key)] = group_id
        if item_id is None:
            continue
        stored.item_ids[(group_id, item_oid)] = item_id
        name = names.get(item_oid)
        if name is not None:
            stored.rows.setdefault(group_oid, {}).setdefault(repeat_key, {})[name] = value
    return stored


def subject_form_values(
    session: Session, study: Study, subject: Subject, form_names: set[str]
) -> dict[str, dict[str, str | None]]:
    """Saved values of other forms (outside repeating groups), by form name then item name.

    When a form was saved at several visits, the earliest visit's values are used (e.g. the
    screening consent date).
    """
    result: dict[str, dict[str, str | None]] = {}
    for name in sorted(form_names):
        form = study.form_by_name(name)
        if form is None:
            continue
        statement = (
            select(FormData)
            .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
            .where(StudyEventData.subject_id == subject.id, FormData.form_oid == form.oid)
            .order_by(col(StudyEventData.id), col(FormData.repeat_key))
        )
        form_data = session.exec(statement).first()
        if form_data is None:
            continue
        rows = _stored_form(session, form_data, form).rows
        values: dict[str, str | None] = {}
        for group in form.item_groups:
            if not group.repeating:
                values.update(rows.get(group.oid, {}).get(1, {}))
        result[name] = values
    return result


def item_audit_trail(
    session: Session,
    subject: Subject,
    ref: FormRef,
    group_oid: str,
    group_repeat: int,
    item_oid: str,
) -> list[AuditRecord]:
    """Every audit record of one item of a subject's form, oldest first."""
    statement = (
        select(AuditRecord)
        .where(
            AuditRecord.subject_id == subject.id,
            AuditRecord.event_oid == ref.event_oid,
            AuditRecord.event_repeat == ref.event_repeat,
            AuditRecord.form_oid == ref.form_oid,
            AuditRecord.form_repeat == ref.form_repeat,
            AuditRecord.item_group_oid == group_oid,
            AuditRecord.group_repeat == group_repeat,
            AuditRecord.item_oid == item_oid,
        )
        .order_by(col(AuditRecord.id))
    )
    return list(session.exec(statement))


def set_visit_date(
    session: Session,
    study: Study,
    *,
    access: Access,
    subject: Subject,
    event_oid: str,
    event_repeat: int,
    visit_date: date,
    reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> StudyEventData:
    """Record (or correct) the date a visit took place; creates the visit when needed, so an
    unscheduled visit is added by dating it. Commits; audited (a correction needs a reason)."""
    access.require(Permission.ENTER_DATA, subject.site_id)
    event = write_visit_date(
        session, study, subject=subject, event_oid=event_oid, event_repeat=event_repeat,
        visit_date=visit_date, reason=reason, actor=actor, now=now,
    )  # fmt: skip
    session.commit()
    session.refresh(event)
    return event


def write_visit_date(
    session: Session,
    study: Study,
    *,
    subject: Subject,
    event_oid: str,
    event_repeat: int,
    visit_date: date,
    reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> StudyEventData:
    """`set_visit_date` without the access check and the commit (the caller does both)."""
    visit = study.visit(event_oid)
    if visit is None or (event_repeat != 1 and not visit.repeating):
        raise NotFound(f"visit {event_oid} #{event_repeat}")
    if visit_date > now.date():
        raise FormRefused("A visit date cannot be in the future.")
    event = _event(session, subject, event_oid, event_repeat)
    old = event.visit_date if event else None
    if old is not None and old != visit_date and not (reason and reason.strip()):
        raise FormRefused("Give a reason for changing the visit date.")
    if event is None:
        event = StudyEventData(
            subject_id=pk(subject), event_oid=event_oid, repeat_key=event_repeat, created_at=now
        )
    event.visit_date = visit_date
    session.add(event)
    if old != visit_date:
        audit.record(
            session, actor=actor, action="visit_date",
            path=audit.DataPath(subject, event_oid, event_repeat),
            old_value=old.isoformat() if old else None, new_value=visit_date.isoformat(),
            reason=reason, at=now,
        )  # fmt: skip
    return event


def _event(
    session: Session, subject: Subject, event_oid: str, event_repeat: int
) -> StudyEventData | None:
    return session.exec(
        select(StudyEventData).where(
            StudyEventData.subject_id == subject.id,
            StudyEventData.event_oid == event_oid,
            StudyEventData.repeat_key == event_repeat,
        )
    ).first()


# -- saving forms -----------------------------------------------------------------------------


def check_form_scheduled(study: Study, event_oid: str, form_oid: str) -> FormDef:
    """The form definition if `form_oid` belongs to `event_oid`, else NotFound."""
    if form_oid not in study.forms_of_event(event_oid):
        raise NotFound(f"form {form_oid} at {event_oid}")
    return study.form(form_oid)


def evaluate_for_subject(
    session: Session, study: Study, subject: Subject, form: FormDef, submitted: RawRows
) -> FormEvaluation:
    """Evaluate a form as it would be saved, reading the other forms it refers to."""
    others = subject_form_values(session, study, subject, referenced_forms(study, form))
    return evaluate_form(study, form, submitted, others)


@dataclass(frozen=True)
class FormRef:
    """Where a form lives in a subject's casebook (ODM StudyEvent and Form OIDs and repeats)."""

    event_oid: str
    event_repeat: int
    form_oid: str
    form_repeat: int


@dataclass(frozen=True)
class FormEdit:
    """What a user submits: values, the version they opened, and their reasons for change."""

    rows: RawRows
    base_version: int
    complete: bool = False
    reason: str | None = None
    """Reason for every changed value that has none of its own."""
    reasons: Mapping[FieldKey, str] = field(default_factory=dict)


REASON_NEEDED = "was changed on a complete form: give a reason for the change"
REASON_RECALCULATED = "recalculated from changed answers"
REASON_NOT_APPLICABLE = "cleared: the question no longer applies"


def save_form(
    session: Session,
    study: Study,
    *,
    access: Access,
    subject: Subject,
    ref: FormRef,
    edit: FormEdit,
    actor: audit.Actor,
    now: datetime,
) -> SaveOutcome:
    """Check and store a form; every changed value gets an audit record. Commits.

    Returns the evaluation with errors (and stores nothing) when a value is invalid, when
    `complete` is asked with required answers missing, or when a value of a complete form
    changes without a reason. Raises SaveConflict when `base_version` is not the stored one.
    Derived values and answers cleared by a show-if get their reason from the system.
    """
    access.require(Permission.ENTER_DATA, subject.site_id)
    try:
        outcome = write_form(
            session, study, subject=subject, ref=ref, edit=edit, actor=actor, now=now
        )
        if outcome.saved:
            session.commit()
    except IntegrityError as error:  # another process created the same form meanwhile
        session.rollback()
        raise SaveConflict(edit.base_version + 1, []) from error
    return outcome


def write_form(
    session: Session,
    study: Study,
    *,
    subject: Subject,
    ref: FormRef,
    edit: FormEdit,
    actor: audit.Actor,
    now: datetime,
) -> SaveOutcome:
    """`save_form` without the access check and the commit: checks and writes the form in
    the caller's transaction (an import stores a whole file in one). The caller checks
    permissions and commits, or rolls back."""
    form, stored = _open(session, study, subject, ref)
    current_version = stored.form_data.version if stored else 0
    old_rows: Rows = stored.rows if stored else {}
    evaluation = evaluate_for_subject(session, study, subject, form, edit.rows)
    if edit.base_version != current_version:
        raise SaveConflict(current_version, _differences(form, old_rows, evaluation.values))
    old_status = stored.form_data.status if stored else FormStatus.NOT_STARTED
    outcome = SaveOutcome(evaluation, saved=False, version=current_version, status=old_status)
    if edit.complete:
        for key in evaluation.missing:
            evaluation.errors.setdefault(key, "is required to mark the form complete")
    changes = _changes(form, old_rows, evaluation.values)
    reasons = _change_reasons(form, changes, evaluation, edit, old_status)
    if evaluation.errors:
        return outcome

    status = FormStatus.COMPLETE if edit.complete else FormStatus.IN_PROGRESS
    path = audit.DataPath(subject, ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)
    form_data = _write_form_data(
        session, subject, ref, form, stored, edit.base_version, status, None, actor, now
    )
    target = stored or StoredForm(form_data, {})
    # The status change is recorded before the values, so that a transactional ODM export
    # (audit-record order) inserts a new form before the values in it.
    if status != old_status:
        audit.record(
            session, actor=actor, action="form_status", path=path, old_value=old_status,
            new_value=status, reason=edit.reason, at=now,
        )  # fmt: skip
    _store_changes(session, form, target, changes, reasons, path, actor, now)
    outcome.saved = True
    outcome.version = edit.base_version + 1
    outcome.status = status
    outcome.changed = len(changes)
    return outcome


def _open_for_edit(
    session: Session, study: Study, access: Access, subject: Subject, ref: FormRef
) -> tuple[FormDef, StoredForm | None]:
    """The form's definition and stored state, once the user may enter data at the site."""
    access.require(Permission.ENTER_DATA, subject.site_id)
    return _open(session, study, subject, ref)


def _open(
    session: Session, study: Study, subject: Subject, ref: FormRef
) -> tuple[FormDef, StoredForm | None]:
    form = check_form_scheduled(study, ref.event_oid, ref.form_oid)
    stored = load_form(
        session, subject, form,
        event_oid=ref.event_oid, event_repeat=ref.event_repeat, form_repeat=ref.form_repeat,
    )  # fmt: skip
    return form, stored


def open_subject_form(
    session: Session, study: Study, access: Access, subject_id: int, ref: FormRef
) -> tuple[Subject, FormDef, StoredForm | None]:
    """A subject's form as this user may see it; NotFound for another site or an unscheduled
    form (the same answer as for something that does not exist)."""
    subject = get_subject(session, access, subject_id)
    form, stored = _open(session, study, subject, ref)
    return subject, form, stored


class FormRefused(Exception):
    """A form action that cannot be done as asked; the message says why."""


def mark_not_done(
    session: Session,
    study: Study,
    *,
    access: Access,
    subject: Subject,
    ref: FormRef,
    base_version: int,
    reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> None:
    """Record that a form was not done, with the reason (audited). Commits.

    Refused (FormRefused) without a reason or while the form holds values; raises
    SaveConflict when `base_version` is not the stored version.
    """
    access.require(Permission.ENTER_DATA, subject.site_id)
    write_not_done(
        session, study, subject=subject, ref=ref, base_version=base_version, reason=reason,
        actor=actor, now=now,
    )  # fmt: skip
    session.commit()


def write_not_done(
    session: Session,
    study: Study,
    *,
    subject: Subject,
    ref: FormRef,
    base_version: int,
    reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> None:
    """`mark_not_done` without the access check and the commit (the caller does both)."""
    form, stored = _open(session, study, subject, ref)
    current_version = stored.form_data.version if stored else 0
    if base_version != current_version:
        raise SaveConflict(current_version, [])
    if not (reason and reason.strip()):
        raise FormRefused("Give the reason the form was not done.")
    if stored and any(
        v is not None for g in stored.rows.values() for r in g.values() for v in r.values()
    ):
        raise FormRefused("This form holds values: remove them before marking it not done.")
    old_status = stored.form_data.status if stored else FormStatus.NOT_STARTED
    _write_form_data(
        session, subject, ref, form, stored, base_version, FormStatus.NOT_DONE, reason, actor, now
    )
    path = audit.DataPath(subject, ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)
    audit.record(
        session, actor=actor, action="form_status", path=path, old_value=old_status,
        new_value=FormStatus.NOT_DONE, reason=reason, at=now,
    )  # fmt: skip


def _change_reasons(
    form: FormDef,
    changes: list[Change],
    evaluation: FormEvaluation,
    edit: FormEdit,
    old_status: str,
) -> dict[FieldKey, str | None]:
    """The reason recorded with each change; flags user changes to a complete form without one."""
    derived = {item.name for group in form.item_groups for item in group.items if item.is_derived}
    reasons: dict[FieldKey, str | None] = {}
    for group_oid, repeat, name, before, after in changes:
        key = (group_oid, repeat, name)
        if name in derived:
            reasons[key] = REASON_RECALCULATED if before is not None else None
        elif key in evaluation.hidden and after is None:
            reasons[key] = REASON_NOT_APPLICABLE
        else:
            given = (edit.reasons.get(key) or edit.reason or "").strip() or None
            if old_status == FormStatus.COMPLETE and given is None:
                evaluation.errors.setdefault(key, REASON_NEEDED)
                evaluation.reason_needed.add(key)
            reasons[key] = given
    return reasons


Change = tuple[str, int, str, str | None, str | None]
"""(group OID, repeat key, item name, old value, new value)."""


def _changes(form: FormDef, old: Rows, new: Rows) -> list[Change]:
    changes: list[Change] = []
    for group in form.item_groups:
        old_group, new_group = old.get(group.oid, {}), new.get(group.oid, {})
        for repeat in sorted(set(old_group) | set(new_group)):
            old_row, new_row = old_group.get(repeat, {}), new_group.get(repeat, {})
            for item in group.items:
                before, after = old_row.get(item.name), new_row.get(item.name)
                if before != after:
                    changes.append((group.oid, repeat, item.name, before, after))
    return changes


def _differences(
    form: FormDef, saved: Rows, submitted: Rows
) -> list[tuple[str, str | None, str | None]]:
    labels = {item.name: item.label for group in form.item_groups for item in group.items}
    return [(labels[name], old, new) for _, _, name, old, new in _changes(form, saved, submitted)]


def _write_form_data(
    session: Session,
    subject: Subject,
    ref: FormRef,
    form: FormDef,
    stored: StoredForm | None,
    base_version: int,
    status: str,
    not_done_reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> FormData:
    """Create the form's row (version 1) or advance its optimistic lock; sets its status."""
    if stored is None:
        form_data = _create_form_data(
            session,
            subject,
            ref.event_oid,
            ref.event_repeat,
            form,
            ref.form_repeat,
            status,
            actor,
            now,
        )
        form_data.not_done_reason = not_done_reason
        return form_data
    _bump_version(session, stored.form_data, base_version, status, not_done_reason, actor, now)
    return stored.form_data


def _create_form_data(
    session: Session,
    subject: Subject,
    event_oid: str,
    event_repeat: int,
    form: FormDef,
    form_repeat: int,
    status: str,
    actor: audit.Actor,
    now: datetime,
) -> FormData:
    event = _event(session, subject, event_oid, event_repeat)
    if event is None:
        event = StudyEventData(
            subject_id=pk(subject), event_oid=event_oid, repeat_key=event_repeat, created_at=now
        )
        session.add(event)
        session.flush()
    form_data = FormData(
        study_event_id=pk(event),
        form_oid=form.oid,
        repeat_key=form_repeat,
        status=status,
        definition_version=form.version,
        updated_at=now,
        updated_by_id=actor.user.id if actor.user else None,
    )
    session.add(form_data)
    session.flush()
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
        updated_at=bindparam("now"),
        updated_by_id=bindparam("user_id"),
    )
)
"""Built once (a Core statement on the table): every save runs it."""


def _bump_version(
    session: Session,
    form_data: FormData,
    base_version: int,
    status: str,
    not_done_reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> None:
    """Advance the optimistic lock; a concurrent save that got there first makes this fail."""
    result = session.execute(
        _BUMP_VERSION,
        {
            "form_id": form_data.id, "base_version": base_version,
            "new_version": base_version + 1, "new_status": status,
            "new_not_done_reason": not_done_reason, "now": now,
            "user_id": actor.user.id if actor.user else None,
        },
    )  # fmt: skip
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise SaveConflict(base_version + 1, [])
    session.expire(form_data)


def _store_changes(
    session: Session,
    form: FormDef,
    stored: StoredForm,
    changes: list[Change],
    reasons: Mapping[FieldKey, str | None],
    path: audit.DataPath,
    actor: audit.Actor,
    now: datetime,
) -> None:
    """Write the changed values and their audit records, using the row ids read with the form
    (the optimistic lock guarantees nobody changed them since)."""
    groups = dict(stored.group_ids)
    missing = sorted({(g, r) for g, r, *_ in changes if (g, r) not in groups})
    new_groups = [
        ItemGroupData(form_data_id=pk(stored.form_data), item_group_oid=g, repeat_key=r)
        for g, r in missing
    ]
    if new_groups:
        session.add_all(new_groups)
        session.flush()  # the new rows' ids are needed by their items
        groups.update({(g.item_group_oid, g.repeat_key): pk(g) for g in new_groups})
    oids = {name: oid for oid, name in _item_names(form).items()}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    removals: list[int] = []
    trail: list[dict[str, Any]] = []
    form_entry = audit.entry(actor=actor, action="", path=path, at=now)
    for group_oid, repeat, name, before, after in changes:
        group_id = groups[(group_oid, repeat)]
        item_oid = oids[name]
        item_id = stored.item_ids.get((group_id, item_oid))
        if after is None:
            if item_id is not None:
                removals.append(item_id)
        elif item_id is None:
            inserts.append({"item_group_data_id": group_id, "item_oid": item_oid, "value": after})
        else:
            updates.append({"item_id": item_id, "new_value": after})
        action = "Insert" if before is None else ("Remove" if after is None else "Update")
        trail.append(
            audit.item_entry(
                form_entry, action=action, item_group_oid=group_oid, group_repeat=repeat,
                item_oid=item_oid, old_value=before, new_value=after,
                reason=reasons.get((group_oid, repeat, name)),
            )
        )  # fmt: skip
    _write_items(session, inserts, updates, removals)
    audit.record_all(session, trail)


_INSERT_ITEMS = insert(_ITEM_DATA)
_UPDATE_ITEMS = (
    update(_ITEM_DATA)
    .where(_ITEM_DATA.c.id == bindparam("item_id"))
    .values(value=bindparam("new_value"))
)
_DELETE_ITEMS = delete(_ITEM_DATA).where(_ITEM_DATA.c.id.in_(bindparam("item_ids", expanding=True)))


def _write_items(
    session: Session,
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    removals: list[int],
) -> None:
    """Apply item value changes as three bulk statements (a lab panel changes dozens)."""
    if inserts:
        session.execute(_INSERT_ITEMS, inserts)
    if updates:
        session.execute(_UPDATE_ITEMS, updates)
    if removals:
        session.execute(_DELETE_ITEMS, {"item_ids": removals})

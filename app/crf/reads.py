"""Reading casebooks: subjects a user may see, stored forms, the values other forms'
expressions read, item audit trails. Nothing here writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.access import Access, Permission
from app.crf.changes import FormRef, NotFound
from app.crf.engine import Rows
from app.models import (
    AuditRecord,
    FormData,
    ItemData,
    ItemGroupData,
    Site,
    StudyEventData,
    Subject,
    pk,
)
from app.site_time import local_date
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import FormDef


@dataclass(frozen=True)
class SubjectFilter:
    """Which subjects the list shows; None: no filter."""

    site_number: str | None = None
    status: str | None = None
    dose_level: str | None = None
    """A dose level code, or "" for subjects without one."""


def list_subjects(
    session: Session, access: Access, where: SubjectFilter = SubjectFilter()
) -> list[tuple[Subject, Site]]:
    """The subjects of the access's study at the sites where the user may see them."""
    sites = access.site_ids(Permission.VIEW_SUBJECTS)
    statement = (
        select(Subject, Site)
        .join(Site, col(Site.id) == Subject.site_id)
        .where(Subject.study_id == access.study_id)
    )
    if sites is not None:
        statement = statement.where(col(Subject.site_id).in_(sites))
    if where.site_number is not None:
        statement = statement.where(col(Site.number) == where.site_number)
    if where.status is not None:
        statement = statement.where(col(Subject.status) == where.status)
    if where.dose_level == "":
        statement = statement.where(col(Subject.dose_level).is_(None))
    elif where.dose_level is not None:
        statement = statement.where(col(Subject.dose_level) == where.dose_level)
    return list(session.exec(statement.order_by(col(Subject.subject_key))).all())


_SUBJECT = (
    select(Subject, Site.time_zone)
    .join(Site, col(Site.id) == Subject.site_id)
    .where(col(Subject.id) == bindparam("subject_id"))
)
_TIME_ZONES = "site_time_zones"
"""Key of `Session.info` where a request keeps the time zones of the sites it has read."""


def get_subject(
    session: Session,
    access: Access,
    subject_id: int,
    permission: Permission = Permission.VIEW_SUBJECTS,
) -> Subject:
    """The subject if it belongs to the access's study and the user holds `permission` at
    its site; NotFound otherwise (never says which)."""
    found = session.exec(_SUBJECT, params={"subject_id": subject_id}).first()
    subject = found[0] if found else None
    if found is not None:
        session.info.setdefault(_TIME_ZONES, {})[found[0].site_id] = found[1]
    if (
        subject is None
        or subject.study_id != access.study_id
        or not access.can(permission, subject.site_id)
    ):
        raise NotFound(f"subject {subject_id}")
    return subject


_SITE_TIME_ZONE = select(Site.time_zone).where(col(Site.id) == bindparam("site_id"))


def site_today(session: Session, subject: Subject, now: datetime) -> date:
    """Today's date at the subject's site (its time zone decides future dates and windows)."""
    known: dict[int, str] = session.info.get(_TIME_ZONES, {})
    time_zone = known.get(subject.site_id)
    if time_zone is None:
        time_zone = session.exec(_SITE_TIME_ZONE, params={"site_id": subject.site_id}).one()
    return local_date(time_zone, now)


@dataclass(frozen=True)
class FormRow:
    """A stored form's row as read: what a save checks (the optimistic lock) and shows. A save
    changes the row by statement (`app.crf.persist`), never through this."""

    id: int
    version: int
    status: str
    not_done_reason: str | None
    definition_version: str

    @classmethod
    def of(cls, form_data: FormData) -> FormRow:
        return cls(
            pk(form_data), form_data.version, form_data.status, form_data.not_done_reason,
            form_data.definition_version,
        )  # fmt: skip


@dataclass(frozen=True)
class StoredForm:
    """A saved form's values, with the row ids a save needs to change them in place.

    `rows` holds the items of the current definition; `retired` the values of items that a
    later definition removed (kept, shown and exported, never silently dropped)."""

    form_data: FormRow
    rows: Rows
    group_ids: dict[tuple[str, int], int] = field(default_factory=dict)
    item_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    """(item group row id, item OID) -> item row id"""
    retired: dict[tuple[str, int, str], str | None] = field(default_factory=dict)
    """(item group OID, repeat key, item OID) -> value, for items not in the definition"""


_FORMS = FormData.__table__  # type: ignore[attr-defined]
_EVENTS = StudyEventData.__table__  # type: ignore[attr-defined]
_GROUPS = ItemGroupData.__table__  # type: ignore[attr-defined]
_ITEM_DATA = ItemData.__table__  # type: ignore[attr-defined]
_FORM_ROW = (
    _FORMS.c.id, _FORMS.c.version, _FORMS.c.status, _FORMS.c.not_done_reason,
    _FORMS.c.definition_version,
)  # fmt: skip
"""The columns of a FormRow, in its order."""
_VALUE_COLUMNS = (
    _GROUPS.c.id, _GROUPS.c.item_group_oid, _GROUPS.c.repeat_key,
    _ITEM_DATA.c.id, _ITEM_DATA.c.item_oid, _ITEM_DATA.c.value,
)  # fmt: skip
_FORM_AT = (
    sa_select(*_FORM_ROW, *_VALUE_COLUMNS)
    .join(_EVENTS, _EVENTS.c.id == _FORMS.c.study_event_id)
    .outerjoin(_GROUPS, _GROUPS.c.form_data_id == _FORMS.c.id)
    .outerjoin(_ITEM_DATA, _ITEM_DATA.c.item_group_data_id == _GROUPS.c.id)
    .where(
        _EVENTS.c.subject_id == bindparam("subject_id"),
        _EVENTS.c.event_oid == bindparam("event_oid"),
        _EVENTS.c.repeat_key == bindparam("event_repeat"),
        _FORMS.c.form_oid == bindparam("form_oid"),
        _FORMS.c.repeat_key == bindparam("form_repeat"),
    )
)
"""A form's row and all its values in one round trip (every form page and save runs it)."""
_FORM_VALUES = (
    sa_select(*_VALUE_COLUMNS)
    .outerjoin(_ITEM_DATA, _ITEM_DATA.c.item_group_data_id == _GROUPS.c.id)
    .where(_GROUPS.c.form_data_id == bindparam("form_data_id"))
)
"""Statements on the save path are built once (building one costs more than running it);
`bindparam` names are filled at each call."""


def load_form(session: Session, subject: Subject, form: FormDef, ref: FormRef) -> StoredForm | None:
    """The stored form at `ref`, or None when nothing was saved there."""
    rows = session.execute(
        _FORM_AT,
        {
            "subject_id": subject.id, "event_oid": ref.event_oid,
            "event_repeat": ref.event_repeat, "form_oid": form.oid,
            "form_repeat": ref.form_repeat,
        },
    ).all()  # fmt: skip
    if not rows:
        return None
    width = len(_FORM_ROW)
    return _filled(StoredForm(FormRow(*rows[0][:width]), {}), form, (row[width:] for row in rows))


def stored_form(session: Session, form_data: FormData, form: FormDef) -> StoredForm:
    """A form's stored values in one query."""
    rows = session.execute(_FORM_VALUES, {"form_data_id": form_data.id})
    return _filled(StoredForm(FormRow.of(form_data), {}), form, rows)


def _filled(stored: StoredForm, form: FormDef, rows: Iterable[Sequence[Any]]) -> StoredForm:
    """`stored` with the values of `rows` (_VALUE_COLUMNS, a group without items as Nones)."""
    names = form.item_names
    for group_id, group_oid, repeat_key, item_id, item_oid, value in rows:
        if group_id is None:
            continue
        stored.group_ids[(group_oid, repeat_key)] = group_id
        if item_id is None:
            continue
        stored.item_ids[(group_id, item_oid)] = item_id
        name = names.get(item_oid)
        if name is None:
            stored.retired[(group_oid, repeat_key, item_oid)] = value
        else:
            stored.rows.setdefault(group_oid, {}).setdefault(repeat_key, {})[name] = value
    return stored


def open_subject_form(
    session: Session, study: Study, access: Access, subject_id: int, ref: FormRef
) -> tuple[Subject, FormDef, StoredForm | None]:
    """A subject's form as this user may see it; NotFound for another site, or a form or
    repeat the casebook does not have (the same answer as for something that does not
    exist)."""
    subject = get_subject(session, access, subject_id)
    form = scheduled_form(session, study, subject, ref)
    return subject, form, load_form(session, subject, form, ref)


def scheduled_form(session: Session, study: Study, subject: Subject, ref: FormRef) -> FormDef:
    """The definition of the form at `ref` if the schedule has it there and the casebook
    shows it; NotFound otherwise.

    A visit that does not repeat has only repeat 1; a repeating visit (unscheduled, long-term
    follow-up) has the repeats that were dated; a form repeats only in the logs, where an
    episode form has the repeats saved so far and the next one."""
    if ref.form_oid not in study.forms_of_event(ref.event_oid):
        raise NotFound(f"form {ref.form_oid} at {ref.event_oid}")
    visit = study.visit(ref.event_oid)
    if visit is not None and visit.repeating:
        if ref.event_repeat not in event_repeats(session, subject, ref.event_oid):
            raise NotFound(f"visit {ref.event_oid} #{ref.event_repeat}")
    elif ref.event_repeat != 1:
        raise NotFound(f"visit {ref.event_oid} #{ref.event_repeat}")
    if study.is_repeating_form(ref.event_oid, ref.form_oid):
        if ref.form_repeat > next_form_repeat(session, subject, ref.form_oid):
            raise NotFound(f"form {ref.form_oid} #{ref.form_repeat}")
    elif ref.form_repeat != 1:
        raise NotFound(f"form {ref.form_oid} #{ref.form_repeat}")
    return study.form(ref.form_oid)


def event_repeats(session: Session, subject: Subject, event_oid: str) -> set[int]:
    """Repeat keys of a visit that the subject has (dated or holding forms)."""
    statement = select(StudyEventData.repeat_key).where(
        StudyEventData.subject_id == subject.id, StudyEventData.event_oid == event_oid
    )
    return set(session.exec(statement))


def next_form_repeat(session: Session, subject: Subject, form_oid: str) -> int:
    """The repeat key a new episode of a repeating log form gets."""
    statement = (
        select(FormData.repeat_key)
        .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
        .where(
            StudyEventData.subject_id == subject.id,
            StudyEventData.event_oid == LOG_EVENT_OID,
            FormData.form_oid == form_oid,
        )
    )
    return max(session.exec(statement), default=0) + 1


class SubjectValues:
    """The values that expressions read from other forms of one subject (`FORM.ITEM`, items
    outside repeating groups), read from the database once and updated with the values a
    change is about to store, so that every step of a change sees the casebook as it will be.

    When a form is stored at several visits, the first in schedule order is read (e.g. the
    screening consent date); a log form at SE.LOG comes after every visit.
    """

    def __init__(self, session: Session, study: Study, subject: Subject) -> None:
        self.session = session
        self.study = study
        self.subject = subject
        self._read: dict[str, tuple[FormRef | None, dict[str, str | None]]] = {}
        self._pending: dict[str, tuple[FormRef, dict[str, str | None]]] = {}
        self._order = {visit.oid: index for index, visit in enumerate(study.schedule.visits)}

    def values(self, form_names: set[str]) -> dict[str, dict[str, str | None]]:
        """By form name then item name; a form not stored yet is left out."""
        result = {}
        for name in form_names:
            ref, values = self._form(name)
            if ref is not None:
                result[name] = values
        return result

    def update(self, ref: FormRef, form: FormDef, rows: Rows) -> None:
        """Take the values `rows` are about to store at `ref` into account (the stored
        instances are compared with it only if something reads the form: most forms are
        read by nothing, and a save should not pay for reading them again)."""
        values = _plain_values(form, rows)
        if form.name in self._read:
            first, _ = self._read[form.name]
            if first is None or self._position(ref) <= self._position(first):
                self._read[form.name] = (ref, values)
        else:
            self._pending[form.name] = (ref, values)

    def _position(self, ref: FormRef) -> tuple[int, int, int]:
        event = self._order.get(ref.event_oid, len(self._order))
        return event, ref.event_repeat, ref.form_repeat

    def _form(self, name: str) -> tuple[FormRef | None, dict[str, str | None]]:
        if name not in self._read:
            first = self._first_stored(name)
            pending = self._pending.pop(name, None)
            if pending and (
                first[0] is None or self._position(pending[0]) <= self._position(first[0])
            ):
                first = pending
            self._read[name] = first
        return self._read[name]

    def _first_stored(self, name: str) -> tuple[FormRef | None, dict[str, str | None]]:
        form = self.study.form_by_name(name)
        if form is None:
            return None, {}
        instances = self.session.exec(
            select(FormData, StudyEventData.event_oid, StudyEventData.repeat_key)
            .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
            .where(StudyEventData.subject_id == self.subject.id, FormData.form_oid == form.oid)
        ).all()
        if not instances:
            return None, {}
        refs = [
            (FormRef(event_oid, event_repeat, form.oid, form_data.repeat_key), form_data)
            for form_data, event_oid, event_repeat in instances
        ]
        ref, form_data = min(refs, key=lambda pair: self._position(pair[0]))
        return ref, _plain_values(form, stored_form(self.session, form_data, form).rows)


def _plain_values(form: FormDef, rows: Rows) -> dict[str, str | None]:
    """The values of a form's items outside repeating groups, by item name."""
    values: dict[str, str | None] = {}
    for group in form.item_groups:
        if not group.repeating:
            values.update(rows.get(group.oid, {}).get(1, {}))
    return values


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

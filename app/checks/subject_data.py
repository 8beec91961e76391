"""One subject's whole casebook as edit checks read it, loaded with one query.

Checks compare values across forms and visits, so they run on a snapshot of everything the
subject has stored: each visit with its date and forms, each log form's instances, the
subject's facts. The snapshot is read inside the change's transaction, after its values are
written, so that checks see the casebook as the change leaves it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Select, and_, bindparam, select
from sqlmodel import Session, col

from app.crf.changes import FormRef
from app.crf.engine import Rows
from app.models import FormData, FormStatus, ItemData, ItemGroupData, StudyEventData, Subject
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import FormDef


@dataclass
class FormInstance:
    """A stored form: where it is, its status, and its values by group OID, row, item name."""

    ref: FormRef
    form: FormDef
    status: str
    rows: Rows = field(default_factory=dict)

    @property
    def not_done(self) -> bool:
        return self.status == FormStatus.NOT_DONE


@dataclass
class VisitInstance:
    """A stored StudyEvent: its date (None when not dated yet) and its forms by form name
    (the first repeat of each; visits hold one of each form)."""

    event_oid: str
    repeat: int
    date: date | None
    forms: dict[str, FormInstance] = field(default_factory=dict)


@dataclass
class SubjectData:
    """Everything one subject has stored, in schedule order."""

    subject: Subject
    visits: list[VisitInstance]
    """Visits in schedule order, repeats in order; the log event is not among them."""
    logs: dict[str, list[FormInstance]]
    """Log form name -> its instances in repeat order."""

    def instances(self, form_oid: str) -> list[FormInstance]:
        """Every stored instance of a form, visits first (schedule order), then the log."""
        found = [
            instance
            for visit in self.visits
            for instance in visit.forms.values()
            if instance.ref.form_oid == form_oid
        ]
        for instances in self.logs.values():
            found += [instance for instance in instances if instance.ref.form_oid == form_oid]
        return found

    def visit_of(self, ref: FormRef) -> VisitInstance | None:
        return next(
            (
                v
                for v in self.visits
                if (v.event_oid, v.repeat) == (ref.event_oid, ref.event_repeat)
            ),
            None,
        )


def _casebook_statement(*, some_forms: bool) -> Select[*tuple[Any, ...]]:
    forms_joined = col(FormData.study_event_id) == col(StudyEventData.id)
    if some_forms:
        forms_joined = and_(forms_joined, col(FormData.form_oid).in_(bindparam("forms")))
    return (
        select(
            col(StudyEventData.event_oid), col(StudyEventData.repeat_key),
            col(StudyEventData.visit_date), col(FormData.form_oid), col(FormData.repeat_key),
            col(FormData.status), col(ItemGroupData.item_group_oid), col(ItemGroupData.repeat_key),
            col(ItemData.item_oid), col(ItemData.value),
        )
        .select_from(StudyEventData)
        .outerjoin(FormData, forms_joined)
        .outerjoin(ItemGroupData, col(ItemGroupData.form_data_id) == col(FormData.id))
        .outerjoin(ItemData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
        .where(col(StudyEventData.subject_id) == bindparam("subject"))
    )  # fmt: skip


_CASEBOOK = _casebook_statement(some_forms=False)
_CASEBOOK_FORMS = _casebook_statement(some_forms=True)
"""Built once: a save runs them, and building a statement costs more than SQLite's answer."""


def load_subject_data(
    session: Session, study: Study, subject: Subject, form_oids: Collection[str] | None = None
) -> SubjectData:
    """The subject's stored casebook (forms the definition no longer has are left out): every
    visit with its date, and the forms of `form_oids` (all when None)."""
    if form_oids is None:
        rows = session.execute(_CASEBOOK, {"subject": subject.id})
    else:
        rows = session.execute(_CASEBOOK_FORMS, {"subject": subject.id, "forms": list(form_oids)})
    visits: dict[tuple[str, int], VisitInstance] = {}
    logs: dict[tuple[str, int], FormInstance] = {}
    instances: dict[tuple[str, int, str, int], FormInstance | None] = {}
    """Each row's form instance; None for a form the definition no longer has, or a second
    repeat of a form at one visit (the casebook does not offer it)."""
    for (
        event_oid,
        e_repeat,
        visit_date,
        form_oid,
        f_repeat,
        status,
        group,
        g_repeat,
        item,
        value,
    ) in rows:
        if event_oid != LOG_EVENT_OID and (event_oid, e_repeat) not in visits:
            visits[event_oid, e_repeat] = VisitInstance(event_oid, e_repeat, _as_date(visit_date))
        if form_oid is None:
            continue
        key = (event_oid, e_repeat, form_oid, f_repeat)
        if key not in instances:
            instances[key] = _new_instance(study, visits, logs, key, status)
        instance = instances[key]
        if instance is None or group is None:
            continue
        name = instance.form.item_names.get(item or "")
        if name is not None:
            instance.rows.setdefault(group, {}).setdefault(g_repeat, {})[name] = value
    order = {visit.oid: index for index, visit in enumerate(study.schedule.visits)}
    ordered = sorted(visits.values(), key=lambda v: (order.get(v.event_oid, len(order)), v.repeat))
    by_form: dict[str, list[FormInstance]] = {}
    for (_, _), instance in sorted(logs.items()):
        by_form.setdefault(instance.form.name, []).append(instance)
    return SubjectData(subject, ordered, by_form)


def _new_instance(
    study: Study,
    visits: dict[tuple[str, int], VisitInstance],
    logs: dict[tuple[str, int], FormInstance],
    key: tuple[str, int, str, int],
    status: str,
) -> FormInstance | None:
    event_oid, e_repeat, form_oid, f_repeat = key
    form = study.forms.get(form_oid)
    if form is None:
        return None
    instance = FormInstance(FormRef(*key), form, status)
    if event_oid == LOG_EVENT_OID:
        logs[form_oid, f_repeat] = instance
        return instance
    forms = visits[event_oid, e_repeat].forms
    if form.name in forms:
        return None  # a second repeat of a form at one visit
    forms[form.name] = instance
    return instance


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])

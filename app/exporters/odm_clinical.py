"""ODM 1.3.2 snapshot export: study metadata, AdminData and the ClinicalData of the subjects in
scope, each level with the AuditRecord of its latest change.

What a SubjectData holds, in schema order:
- AuditRecord of the subject's latest creation or status change, the casebook's Signature in
  force (`odm_signatures`), SiteRef, then Annotations:
  status (CL.SUBJECTSTATUS, effective date as Comment), dose level and phase (CL.DOSELEVEL,
  CL.PHASE) once assigned;
- StudyEventData with the AuditRecord of its visit date and an Annotation of that date;
- FormData with the AuditRecord of its latest status change, its Signature in force, and an
  Annotation of its status
  (CL.FORMSTATUS); a form not done carries its reason as Comment, and every item of its
  definition as ItemData IsNull="Yes" with the same reason;
- ItemGroupData and ItemData with the AuditRecord of the value's latest change.
The Annotation functions live in `odm_common` (one per kind, see its docstring): investigators'
Signatures, queries and verification flags are added there as further elements of the same
levels, without changing how this module walks the data. After the last SubjectData, the
safety board's decisions with their signatures (`odm_board`), in a whole-study or cohort
export.

Incremental (`scope.changed_since`): only subjects with an audit record after the moment, and
within them only the values, visit dates and form statuses changed after it, with the
containers they need. A removed value has no ItemData here; the transactional export has it.

Streamed: the document is written with lxml's incremental `xmlfile`; each subject is read with
two queries of plain columns (its data, and the latest audit record of each of its values) and
written before the next is read, so memory is bounded by the largest subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import BindParameter, bindparam, func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from app.crf.changes import FormRef
from app.exporters.odm_board import board_decisions
from app.exporters.odm_common import (
    LOCATED_AUDIT_COLUMNS,
    ODM_NSMAP,
    PATH_COLUMNS,
    AuditRecords,
    AuditRow,
    DataKey,
    ExportCounts,
    RepeatKeys,
    Sites,
    as_utc,
    audit_rows,
    data_key,
    dose_annotation,
    form_status_annotation,
    not_done_item,
    odm_document,
    q,
    subject_status_annotation,
    visit_date_annotation,
)
from app.exporters.odm_review import lock_annotation, placed_at, query_annotation
from app.exporters.odm_signatures import signature_defs, signature_element, valid_signatures
from app.exporters.scope import (
    ExportScope,
    Progress,
    no_progress,
    scoped_subject_ids,
    scoped_subjects,
)
from app.models import (
    AuditRecord,
    FormData,
    FormStatus,
    ItemData,
    ItemGroupData,
    Query,
    Signature,
    StudyEventData,
    Subject,
)
from app.review.locks import LockPlace, active_locks, strongest
from app.study.loader import Study

SUBJECT_LEVEL: DataKey = (None, None, None, None, None, None, None)


def write_odm_snapshot(
    session: Session,
    study: Study,
    path: Path,
    scope: ExportScope | None = None,
    progress: Progress = no_progress,
) -> ExportCounts:
    """Write the subjects in `scope` as one ODM 1.3.2 Snapshot file; returns what was written.
    Calls `progress(done, total)` after each subject in scope (default: the whole study)."""
    scope = scope or ExportScope(study_id=study.id)
    counts = ExportCounts()
    total = len(scoped_subject_ids(session, scope))
    since = scope.changed_since
    changed = _subjects_changed_since(session, since) if since is not None else None
    board = board_decisions(session, study, scope)
    extras = board.admin(signature_defs(study))
    with odm_document(str(path), session, study, "Snapshot", scope, extras) as (xf, sites):
        writer = _SubjectWriter(study, sites, since)
        for done, subject in enumerate(scoped_subjects(session, scope), start=1):
            if changed is None or subject.id in changed:
                element, items = writer.subject_data(session, subject)
                xf.write(element)
                counts.subjects += 1
                counts.items += items
            progress(done, total)
        board.write(xf, transactional=False)
    return counts


def _subjects_changed_since(session: Session, since: datetime) -> set[int]:
    rows = session.execute(
        sa_select(col(AuditRecord.subject_id))
        .where(col(AuditRecord.occurred_at) > since, col(AuditRecord.subject_id).is_not(None))
        .distinct()
    )
    return {subject_id for (subject_id,) in rows}


SUBJECT_ID: BindParameter[int] = bindparam("subject_id")

LATEST_AUDIT = sa_select(*LOCATED_AUDIT_COLUMNS).where(
    col(AuditRecord.id).in_(
        sa_select(func.max(col(AuditRecord.id)))
        .where(col(AuditRecord.subject_id) == SUBJECT_ID)
        .group_by(*PATH_COLUMNS)
    )
)
"""The latest audit record of each value, form, visit and of the subject itself."""


_DATA_COLUMNS: tuple[Mapped[Any], ...] = (
    col(StudyEventData.id),
    col(StudyEventData.event_oid),
    col(StudyEventData.repeat_key),
    col(StudyEventData.visit_date),
    col(FormData.id),
    col(FormData.form_oid),
    col(FormData.repeat_key),
    col(FormData.status),
    col(FormData.not_done_reason),
    col(ItemGroupData.id),
    col(ItemGroupData.item_group_oid),
    col(ItemGroupData.repeat_key),
    col(ItemData.item_oid),
    col(ItemData.value),
)
SUBJECT_DATA = (
    sa_select(*_DATA_COLUMNS)
    .select_from(StudyEventData)
    .outerjoin(FormData, col(FormData.study_event_id) == col(StudyEventData.id))
    .outerjoin(ItemGroupData, col(ItemGroupData.form_data_id) == col(FormData.id))
    .outerjoin(ItemData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
    .where(col(StudyEventData.subject_id) == SUBJECT_ID)
    .order_by(
        col(StudyEventData.id),
        col(FormData.id),
        col(ItemGroupData.item_group_oid),
        col(ItemGroupData.repeat_key),
        col(ItemData.id),
    )
)
"""A subject's events, forms, item group repeats and values, in the order the walk expects
(outer joins: a visit without forms and a form without values are written too)."""


class _SubjectWriter:
    """Builds one subject's SubjectData element; holds what every subject shares."""

    def __init__(self, study: Study, sites: Sites, since: datetime | None) -> None:
        self.repeats = RepeatKeys(study)
        self.sites = sites
        self.audits = AuditRecords(sites)
        self.since = since
        forms = [*study.forms.values(), *(retired.form for retired in study.retired.forms.values())]
        self.form_items = {
            form.oid: [
                (group.oid, [item.oid for item in group.items]) for group in form.item_groups
            ]
            for form in forms
        }
        self.item_order = {
            (form_oid, group_oid, item_oid): index
            for form_oid, groups in self.form_items.items()
            for group_oid, item_oids in groups
            for index, item_oid in enumerate(item_oids)
        }

    def subject_data(self, session: Session, subject: Subject) -> tuple[etree._Element, int]:
        """The SubjectData element of `subject` and the number of ItemData in it."""
        connection = session.connection()
        params = {"subject_id": subject.id}
        records = audit_rows(connection.execute(LATEST_AUDIT, params).all())
        latest = {data_key(record): record for record in records}
        self.audits.next_subject()
        element = etree.Element(q("SubjectData"), SubjectKey=subject.subject_key, nsmap=ODM_NSMAP)
        self._audit(element, latest.get(SUBJECT_LEVEL))
        signed = valid_signatures(session, subject)
        self._sign(element, signed.get(None), subject)
        etree.SubElement(element, q("SiteRef"), LocationOID=self.sites[subject.site_id])
        subject_status_annotation(element, subject.status, subject.status_date)
        dose_annotation(element, subject.dose_level, subject.phase)
        queries = _queries_by_place(session, subject)
        locks = active_locks(session, subject)
        for lock in placed_at(locks):
            lock_annotation(element, lock)
        rows = self._in_definition_order(connection.execute(SUBJECT_DATA, params).all())
        changed: set[etree._Element] = set()  # containers changed since the moment
        items = 0
        # Every row's parents are written before it: the first row differs from these keys.
        event_el = form_el = group_el = element
        event_id = form_id = group_id = -1
        form_not_done = False
        for (
            e_id, event_oid, e_repeat, visit_date, f_id, form_oid, f_repeat, status, reason,
            g_id, group_oid, g_repeat, item_oid, value,
        ) in rows:  # fmt: skip
            if e_id != event_id:
                event_id, form_id = e_id, -1
                event_el = self.repeats.event(element, event_oid, e_repeat)
                key: DataKey = (event_oid, e_repeat, None, None, None, None, None)
                if self._audit(event_el, latest.get(key)):
                    changed.add(event_el)
                visit_date_annotation(event_el, visit_date)
                for lock in placed_at(locks, event_oid, e_repeat):
                    lock_annotation(event_el, lock)
                for query in queries.get(key, ()):
                    query_annotation(session, event_el, query)
            if f_id is None:
                continue
            if f_id != form_id:
                form_id, group_id = f_id, -1
                form_el = self.repeats.form(event_el, event_oid, form_oid, f_repeat)
                key = (event_oid, e_repeat, form_oid, f_repeat, None, None, None)
                form_changed = self._audit(form_el, latest.get(key))
                self._sign(
                    form_el, signed.get(FormRef(event_oid, e_repeat, form_oid, f_repeat)), subject
                )
                form_not_done = status == FormStatus.NOT_DONE
                form_status_annotation(form_el, status, reason if form_not_done else None)
                in_force = strongest(locks, LockPlace(event_oid, e_repeat, form_oid, f_repeat))
                if in_force is not None:
                    lock_annotation(form_el, in_force)
                for query in queries.get(key, ()):
                    query_annotation(session, form_el, query)
                if form_changed:
                    changed.add(form_el)
                if form_not_done and (self.since is None or form_changed):
                    items += self._not_done_items(form_el, form_oid, reason)
            if g_id is None or form_not_done:
                continue
            if g_id != group_id:
                group_id = g_id
                group_el = self.repeats.group(form_el, form_oid, group_oid, g_repeat)
            if value is None:
                continue
            item_key = (event_oid, e_repeat, form_oid, f_repeat, group_oid, g_repeat, item_oid)
            record = latest.get(item_key)
            if self.since is not None and not self._after_since(record):
                continue
            item_el = etree.SubElement(group_el, q("ItemData"), ItemOID=item_oid, Value=value)
            if record is not None:
                item_el.append(self.audits.element(record))
            for query in queries.get(item_key, ()):
                query_annotation(session, item_el, query)
            items += 1
        if self.since is not None:
            _drop_unchanged_containers(element, changed)
        return element, items

    def _in_definition_order(self, rows: Sequence[Any]) -> list[Any]:
        """`rows` with each item group repeat's values in the order of its ItemRefs (stored,
        they are in the order they were first entered; an import stores them in the file's)."""
        starts: dict[object, int] = {}

        def position(numbered: tuple[int, Any]) -> tuple[int, int]:
            n, row = numbered
            form_oid, g_id, group_oid, item_oid = row[5], row[9], row[10], row[12]
            start = starts.setdefault(("row", n) if g_id is None else g_id, n)
            return start, self.item_order.get((form_oid, group_oid, item_oid), -1)

        return [row for _, row in sorted(enumerate(rows), key=position)]

    def _audit(self, element: etree._Element, record: AuditRow | None) -> bool:
        """Add the AuditRecord of the element's latest change; True if that change is after
        the moment of an incremental export."""
        if record is None:
            return False
        element.append(self.audits.element(record))
        return self._after_since(record)

    def _sign(self, element: etree._Element, signature: Signature | None, subject: Subject) -> None:
        """Add the signature in force on the element (after its AuditRecord)."""
        if signature is not None:
            element.append(signature_element(signature, self.sites, subject.site_id))

    def _after_since(self, record: AuditRow | None) -> bool:
        if record is None or self.since is None:
            return False
        return as_utc(record.occurred_at) > self.since

    def _not_done_items(self, form_el: etree._Element, form_oid: str, reason: str | None) -> int:
        items = 0
        for group_oid, item_oids in self.form_items[form_oid]:
            group_el = self.repeats.group(form_el, form_oid, group_oid, 1)
            for item_oid in item_oids:
                not_done_item(group_el, item_oid, reason)
            items += len(item_oids)
        return items


def _drop_unchanged_containers(element: etree._Element, changed: set[etree._Element]) -> None:
    """Remove the groups, forms and visits of an incremental export that hold no change."""
    for event_el in list(element.iterchildren(q("StudyEventData"))):
        for form_el in list(event_el.iterchildren(q("FormData"))):
            for group_el in list(form_el.iterchildren(q("ItemGroupData"))):
                if _no_child(group_el, "ItemData"):
                    form_el.remove(group_el)
            if form_el not in changed and _no_child(form_el, "ItemGroupData"):
                event_el.remove(form_el)
        if event_el not in changed and _no_child(event_el, "FormData"):
            element.remove(event_el)


def _no_child(element: etree._Element, tag: str) -> bool:
    return next(element.iterchildren(q(tag)), None) is None


def _queries_by_place(session: Session, subject: Subject) -> dict[DataKey, list[Query]]:
    """The subject's queries by the visit, form or item they are on, oldest first."""
    found: dict[DataKey, list[Query]] = {}
    statement = select(Query).where(Query.subject_id == subject.id).order_by(col(Query.id))
    for query in session.exec(statement):
        key: DataKey = (
            query.event_oid, query.event_repeat, query.form_oid, query.form_repeat,
            query.item_group_oid, query.group_repeat, query.item_oid,
        )  # fmt: skip
        found.setdefault(key, []).append(query)
    return found

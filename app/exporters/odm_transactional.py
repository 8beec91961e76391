"""ODM 1.3.2 transactional export: the whole audit history of the subjects in scope, subject
by subject (in subject key order), each subject's changes in the order they were recorded.

Every change is one element with its own TransactionType and AuditRecord (who, where, when,
why, through what):
- a value entered, changed or cleared: ItemData Insert / Update (with the new Value) / Remove,
  inside StudyEventData, FormData and ItemGroupData of TransactionType "Context" (they only
  locate the value; consecutive changes of the same form share them);
- a subject registered: SubjectData Insert with its SiteRef and initial status flag;
- a subject status change: SubjectData Update with the status flag (effective date as Comment)
  and, on enrolment, the dose level and phase flags;
- a visit dated or its date corrected: StudyEventData Insert / Update with the date annotation;
- a form status change (in progress, complete, not done with its reason): FormData Insert (the
  form's first status) or Update with the status flag;
- after the subject's values, each query transition and each freeze or lock set or released
  (`odm_review`), then each signing of the casebook or a form (`odm_signatures`);
- after the last subject, each decision of the safety board signed in the scope and period,
  an Annotation Insert of ClinicalData with its Signature (`odm_board`).
The flags are the Annotations of the snapshot export (see `odm_common`).

`scope.changed_since` keeps only the changes recorded after that moment. Streamed: a subject's
audit records are read in batches and its SubjectData written every `CHANGES_PER_ELEMENT`
changes, so memory stays bounded whatever the length of a subject's history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import Select, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.audit import ITEM_ACTIONS, AuditAction, StatusContext
from app.exporters.odm_board import board_decisions
from app.exporters.odm_common import (
    AUDIT_COLUMNS,
    ODM_NSMAP,
    AuditRecords,
    AuditRow,
    ExportCounts,
    RepeatKeys,
    Sites,
    audit_rows,
    dose_annotation,
    form_status_annotation,
    odm_document,
    q,
    subject_status_annotation,
    visit_date_annotation,
)
from app.exporters.odm_review import review_history_statement, write_review_history
from app.exporters.odm_signatures import signature_defs, write_signature_history
from app.exporters.scope import (
    ExportScope,
    Progress,
    no_progress,
    scoped_subject_ids,
    scoped_subjects,
)
from app.models import AuditRecord, FormStatus, Subject
from app.study.loader import Study

HISTORY_ACTIONS = (
    *ITEM_ACTIONS,
    AuditAction.SUBJECT_CREATE,
    AuditAction.SUBJECT_STATUS,
    AuditAction.VISIT_DATE,
    AuditAction.FORM_STATUS,
)
"""The audit actions a transactional export replays; item actions are TransactionTypes."""

CHANGES_PER_ELEMENT = 500
"""Item changes in one SubjectData element before it is written out and another begins."""
BATCH_ROWS = 1000
"""Audit records fetched from the database at a time."""


def write_odm_transactional(
    session: Session,
    study: Study,
    path: Path,
    scope: ExportScope | None = None,
    progress: Progress = no_progress,
) -> ExportCounts:
    """Write the audit history of the subjects in `scope` as one ODM 1.3.2 Transactional file;
    returns the subjects with changes and the ItemData changes written. Calls
    `progress(done, total)` after each subject in scope (default: the whole study)."""
    scope = scope or ExportScope(study_id=study.id)
    counts = ExportCounts()
    total = len(scoped_subject_ids(session, scope))
    repeats = RepeatKeys(study)
    statement = _history_statement(scope)
    review = review_history_statement(scope.changed_since)
    board = board_decisions(session, study, scope)
    extras = board.admin(signature_defs(study))
    with odm_document(str(path), session, study, "Transactional", scope, extras) as (xf, sites):
        for done, subject in enumerate(scoped_subjects(session, scope), start=1):
            history = _SubjectHistory(xf, study, repeats, sites, subject)
            rows = session.connection().execute(
                statement, {"subject_id": subject.id}, execution_options={"yield_per": BATCH_ROWS}
            )
            for row in audit_rows(rows):
                history.add(row)
            history.flush()
            # After the values: an import restores queries and locks once values are stored.
            history.changes += write_review_history(xf, session, review, subject, repeats, sites)
            history.changes += write_signature_history(
                xf, session, subject, repeats, sites, scope.changed_since
            )
            if history.changes:
                counts.subjects += 1
            counts.items += history.items
            progress(done, total)
        board.write(xf, transactional=True)
    return counts


def _history_statement(scope: ExportScope) -> Select[Any]:
    """A subject's changes (the subject id bound as `subject_id`) in recorded order."""
    statement = (
        sa_select(*AUDIT_COLUMNS)
        .where(
            col(AuditRecord.subject_id) == bindparam("subject_id"),
            col(AuditRecord.action).in_(HISTORY_ACTIONS),
        )
        .order_by(col(AuditRecord.id))
    )
    if scope.changed_since is not None:
        statement = statement.where(col(AuditRecord.occurred_at) > scope.changed_since)
    return statement


class _SubjectHistory:
    """Turns one subject's audit records, in order, into SubjectData elements and writes them.

    Item changes go into a SubjectData of TransactionType Context; the containers of the last
    change stay open, so that the next change of the same item group shares them."""

    def __init__(
        self,
        xf: etree._IncrementalFileWriter,
        study: Study,
        repeats: RepeatKeys,
        sites: Sites,
        subject: Subject,
    ) -> None:
        self.xf = xf
        self.initial_status = study.subject_path.initial
        self.repeats = repeats
        self.sites = sites
        self.audits = AuditRecords(sites)
        self.subject = subject
        self.changes = 0
        self.items = 0
        self.pending = 0
        self.context: etree._Element | None = None
        self.event_key: tuple[str, int] | None = None
        self.form_key: tuple[str, int] | None = None
        self.group_key: tuple[str, int] | None = None
        self.event_el = self.form_el = self.group_el = etree.Element(
            q("SubjectData"), nsmap=ODM_NSMAP
        )

    def add(self, row: AuditRow) -> None:
        self.changes += 1
        if row.action in ITEM_ACTIONS:
            self._item(row)
        elif row.action == AuditAction.FORM_STATUS:
            self._form_status(row)
        elif row.action == AuditAction.VISIT_DATE:
            self._visit_date(row)
        else:
            self._subject(row)

    def flush(self) -> None:
        """Write the open SubjectData, if any; the next change opens another."""
        if self.context is not None:
            self.xf.write(self.context)
        self.context = None
        self.pending = 0
        self.event_key = self.form_key = self.group_key = None

    def _subject_data(self, transaction: str) -> etree._Element:
        return etree.Element(
            q("SubjectData"),
            SubjectKey=self.subject.subject_key,
            TransactionType=transaction,
            nsmap=ODM_NSMAP,
        )

    def _subject(self, row: AuditRow) -> None:
        self.flush()
        created = row.action == AuditAction.SUBJECT_CREATE
        element = self._subject_data("Insert" if created else "Update")
        element.append(self.audits.element(row))
        if created:
            etree.SubElement(element, q("SiteRef"), LocationOID=self.sites[self.subject.site_id])
            subject_status_annotation(element, self.initial_status, None)
        else:
            context = StatusContext.model_validate(row.context or {"effective": None})
            subject_status_annotation(element, row.value, context.effective)
            dose_annotation(element, context.dose_level, context.phase)
        self.xf.write(element)

    def _open_event(self, row: AuditRow) -> etree._Element:
        """The Context StudyEventData of the row's visit, reusing the open one."""
        key = row.event
        if self.context is None:
            self.context = self._subject_data("Context")
        if key != self.event_key:
            self.event_el = self.repeats.event(self.context, *key)
            self.event_el.set("TransactionType", "Context")
            self.event_key, self.form_key = key, None
        return self.event_el

    def _open_form(self, row: AuditRow) -> etree._Element:
        event_el = self._open_event(row)
        key = row.form
        if key != self.form_key:
            self.form_el = self.repeats.form(event_el, row.event[0], *key)
            self.form_el.set("TransactionType", "Context")
            self.form_key, self.group_key = key, None
        return self.form_el

    def _item(self, row: AuditRow) -> None:
        form_el = self._open_form(row)
        key = row.group
        if key != self.group_key:
            self.group_el = self.repeats.group(form_el, row.form[0], *key)
            self.group_el.set("TransactionType", "Context")
            self.group_key = key
        item = etree.SubElement(
            self.group_el, q("ItemData"), ItemOID=row.item, TransactionType=row.action
        )
        if row.new_value is not None:
            item.set("Value", row.new_value)
        item.append(self.audits.element(row))
        self.items += 1
        self.pending += 1
        if self.pending >= CHANGES_PER_ELEMENT:
            self.flush()

    def _form_status(self, row: AuditRow) -> None:
        event_el = self._open_event(row)
        form_el = self.repeats.form(event_el, row.event[0], *row.form)
        first = row.old_value in (None, FormStatus.NOT_STARTED)
        form_el.set("TransactionType", "Insert" if first else "Update")
        form_el.append(self.audits.element(row))
        not_done = row.new_value == FormStatus.NOT_DONE
        form_status_annotation(form_el, row.value, row.reason if not_done else None)
        self.form_key = None  # later values of the form open a Context FormData after this one

    def _visit_date(self, row: AuditRow) -> None:
        if self.context is None:
            self.context = self._subject_data("Context")
        event_el = self.repeats.event(self.context, *row.event)
        event_el.set("TransactionType", "Insert" if row.old_value is None else "Update")
        event_el.append(self.audits.element(row))
        visit_date_annotation(event_el, row.new_value)
        self.event_key = None  # later changes in the visit open a Context StudyEventData

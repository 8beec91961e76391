"""Derived values and conditions that stay true across forms.

When a change alters an item that another form's derivation or show-if reads (`IC.ICDAT` in
DM.AGE, `EX.EXSTDTM` in the DLT window end, `DM.SEX` in the pregnancy test's condition), every
stored instance of that form is evaluated again in the same change, with the values the change
is about to store, and what differs becomes part of the change: derived values recalculated,
answers that no longer apply cleared, each audited with the input that caused it. The dependency
index of the study (`Study.dependencies`) says which forms read what.
"""

from __future__ import annotations

from collections import deque

from sqlmodel import Session, col, select

from app.crf.changes import FormRef
from app.crf.engine import evaluate_form, referenced_forms
from app.crf.form_changes import (
    REASON_NOT_APPLICABLE,
    REASON_RECALCULATED,
    changes,
    item_changes,
)
from app.crf.plans import FormPlan
from app.crf.reads import StoredForm, SubjectValues, stored_form
from app.models import FormData, StudyEventData, Subject
from app.study.loader import Study
from app.study.model import FormDef

MAX_PASSES = 5
"""Times one form may be re-derived in a change: derivations that read each other across
forms settle long before; the bound stops a definition that never would."""


def rederive(
    session: Session,
    study: Study,
    subject: Subject,
    values: SubjectValues,
    planned: list[FormPlan],
) -> list[FormPlan]:
    """Plans for the subject's other forms that `planned` changes feed, in the order found.

    `values` must already hold what `planned` stores; it is updated with each re-derived form,
    so that a chain (A feeds B, B feeds C) settles in one change. A form the user is saving
    in this change is not re-derived; a stored form whose values no longer evaluate (a
    definition changed under them) is left for the site to correct.
    """
    own = {plan.ref for plan in planned}
    found: dict[FormRef, FormPlan] = {}
    passes: dict[FormRef, int] = {}
    inputs: dict[FormRef, set[str]] = {}
    queue = deque(planned)
    while queue:
        source = queue.popleft()
        changed = _changed_names(source)
        readers = study.dependencies.forms_reading(source.form.name, changed)
        for oid in sorted(readers - {source.form.oid}):
            form = study.form(oid)
            read = {
                item for name, item in study.dependencies.reads[oid] if name == source.form.name
            }
            for ref, form_data in _instances(session, subject, oid):
                if ref in own or passes.get(ref, 0) >= MAX_PASSES:
                    continue
                passes[ref] = passes.get(ref, 0) + 1
                inputs.setdefault(ref, set()).update(
                    f"{source.form.name}.{name}" for name in sorted(changed & read)
                )
                stored = stored_form(session, form_data, form)
                plan = _plan(study, ref, form, stored, values, inputs[ref])
                if plan is None:
                    continue
                found[ref] = plan
                queue.append(plan)
    return list(found.values())


def _changed_names(plan: FormPlan) -> set[str]:
    names = plan.form.item_names
    return {names[change.item_oid] for change in plan.changes if change.item_oid in names}


def _instances(session: Session, subject: Subject, form_oid: str) -> list[tuple[FormRef, FormData]]:
    rows = session.exec(
        select(FormData, StudyEventData.event_oid, StudyEventData.repeat_key)
        .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
        .where(StudyEventData.subject_id == subject.id, FormData.form_oid == form_oid)
        .order_by(col(StudyEventData.id), col(FormData.repeat_key))
    ).all()
    return [
        (FormRef(event_oid, event_repeat, form_oid, form_data.repeat_key), form_data)
        for form_data, event_oid, event_repeat in rows
    ]


def _plan(
    study: Study,
    ref: FormRef,
    form: FormDef,
    stored: StoredForm,
    values: SubjectValues,
    inputs: set[str],
) -> FormPlan | None:
    """The form re-evaluated from its stored values; None when nothing changes."""
    others = values.values(referenced_forms(study, form))
    evaluation = evaluate_form(study, form, stored.rows, others)
    if not evaluation.is_valid:
        return None
    found = changes(form, stored.rows, evaluation.values)
    if not found:
        return None
    cause = ", ".join(sorted(inputs))
    derived = {item.name for group in form.item_groups for item in group.items if item.is_derived}
    reasons = {
        (group_oid, repeat, name): f"{REASON_RECALCULATED}: {cause}"
        if name in derived
        else f"{REASON_NOT_APPLICABLE} ({cause} changed)"
        for group_oid, repeat, name, _, _ in found
    }
    values.update(ref, form, evaluation.values)
    status = stored.form_data.status
    return FormPlan(
        ref=ref, form=form, definition_version=study.mdv_oid, stored=stored,
        base_version=stored.form_data.version,
        old_status=status, status=status, changes=item_changes(form, found, reasons),
        not_done_reason=stored.form_data.not_done_reason,
    )  # fmt: skip

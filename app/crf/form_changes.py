"""The evaluate step for changes to one form: values saved (in progress or complete) and a form
marked not done. Each becomes a `FormPlan`: the form's new status and every value that changes,
with the reason recorded for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session

from app.crf.changes import (
    FormEdit,
    FormNotDone,
    FormRef,
    FormRefused,
    SaveConflict,
    check_reasons,
)
from app.crf.engine import FieldKey, FormEvaluation, RawRows, Rows, evaluate_form, referenced_forms
from app.crf.plans import FormPlan, ItemChange
from app.crf.reads import StoredForm, SubjectValues, site_today
from app.crf.values import DateLimits
from app.models import FormStatus, Subject
from app.study.loader import Study
from app.study.model import FormDef

REASON_NEEDED = "was changed on a complete form: give a reason for the change"
REASON_RECALCULATED = "recalculated from changed answers"
REASON_NOT_APPLICABLE = "cleared: the question no longer applies"
REQUIRED_ON_COMPLETE = "is required: the form is complete"
REQUIRED_TO_COMPLETE = "is required to mark the form complete"

Change = tuple[str, int, str, str | None, str | None]
"""(group OID, repeat key, item name, old value, new value)."""


def check_version(form: FormDef, stored: StoredForm | None, base_version: int) -> None:
    """Raise SaveConflict when the form was saved since the user opened it at `base_version`."""
    current = stored.form_data.version if stored else 0
    if base_version != current:
        raise SaveConflict(current, [])


def conflict_with(
    study: Study, form: FormDef, stored: StoredForm | None, edit: FormEdit
) -> SaveConflict:
    """The conflict of a stale save, listing what the other user's save holds against what
    this user submitted."""
    saved: Rows = stored.rows if stored else {}
    submitted = evaluate_form(study, form, merged_rows(saved, edit), {}).values
    labels = {item.name: item.label for group in form.item_groups for item in group.items}
    differences = [
        (labels[name], old, new) for _, _, name, old, new in changes(form, saved, submitted)
    ]
    return SaveConflict(stored.form_data.version if stored else 0, differences)


def merged_rows(stored: Rows, edit: FormEdit) -> RawRows:
    """The form as it will be: the stored rows, each row `edit` names replaced by the row as
    submitted (an item left out of a named row is cleared), rows in `edit.removed` gone."""
    rows: dict[str, dict[int, Mapping[str, str | list[str] | None]]] = {
        group: dict(repeats) for group, repeats in stored.items()
    }
    for group_oid, repeats in edit.rows.items():
        rows.setdefault(group_oid, {}).update(repeats)
    for group_oid, repeat in edit.removed:
        rows.get(group_oid, {}).pop(repeat, None)
    return rows


def plan_values(
    study: Study,
    ref: FormRef,
    form: FormDef,
    stored: StoredForm | None,
    edit: FormEdit,
    values: SubjectValues,
    limits: DateLimits,
) -> tuple[FormPlan, FormEvaluation]:
    """The plan of a save and its evaluation; the evaluation's errors refuse it.

    Refused: invalid values, a removed preset row, required answers missing when the form is
    or becomes complete (a complete form stays complete), and a changed value of a complete
    form without a reason. Derived values and answers a show-if clears get a system reason.
    """
    check_reasons(edit.reason, *edit.reasons.values())
    old_rows: Rows = stored.rows if stored else {}
    evaluation = evaluate_form(
        study, form, merged_rows(old_rows, edit), values.values(referenced_forms(study, form)),
        limits,
    )  # fmt: skip
    _refuse_preset_removals(form, edit, evaluation)
    old_status = stored.form_data.status if stored else FormStatus.NOT_STARTED
    complete = edit.complete or old_status == FormStatus.COMPLETE
    for key in evaluation.missing if complete else ():
        message = REQUIRED_TO_COMPLETE if edit.complete else REQUIRED_ON_COMPLETE
        evaluation.errors.setdefault(key, message)
    found = changes(form, old_rows, evaluation.values)
    reasons = _change_reasons(form, found, evaluation, edit, old_status)
    plan = FormPlan(
        ref=ref, form=form, definition_version=study.mdv_oid, stored=stored,
        base_version=edit.base_version, old_status=old_status,
        status=FormStatus.COMPLETE if complete else FormStatus.IN_PROGRESS,
        changes=item_changes(form, found, reasons), status_reason=edit.reason,
    )  # fmt: skip
    return plan, evaluation


def preview(
    session: Session,
    study: Study,
    subject: Subject,
    form: FormDef,
    stored: StoredForm | None,
    edit: FormEdit,
    now: datetime,
) -> FormEvaluation:
    """The form evaluated as saving `edit` would evaluate it (nothing is written): what a
    page shows as the site types, and what reading a stored form shows (an empty edit)."""
    values = SubjectValues(session, study, subject)
    limits = DateLimits(study.info.earliest_date, site_today(session, subject, now))
    old_rows: Rows = stored.rows if stored else {}
    others = values.values(referenced_forms(study, form))
    return evaluate_form(study, form, merged_rows(old_rows, edit), others, limits)


def plan_not_done(
    study: Study, ref: FormRef, form: FormDef, stored: StoredForm | None, change: FormNotDone
) -> FormPlan:
    """The plan of marking a form not done; refused without a reason or while it holds values."""
    if not (change.reason and change.reason.strip()):
        raise FormRefused("Give the reason the form was not done.")
    check_reasons(change.reason)
    if stored and any(
        v is not None for g in stored.rows.values() for r in g.values() for v in r.values()
    ):
        raise FormRefused("This form holds values: remove them before marking it not done.")
    return FormPlan(
        ref=ref, form=form, definition_version=study.mdv_oid, stored=stored,
        base_version=change.base_version,
        old_status=stored.form_data.status if stored else FormStatus.NOT_STARTED,
        status=FormStatus.NOT_DONE, changes=[], not_done_reason=change.reason,
        status_reason=change.reason,
    )  # fmt: skip


def _refuse_preset_removals(form: FormDef, edit: FormEdit, evaluation: FormEvaluation) -> None:
    """A preset row (one per eligibility criterion, one per lab test) belongs to the form."""
    for group in form.item_groups:
        for group_oid, repeat in edit.removed:
            if group_oid == group.oid and repeat <= len(group.rows):
                evaluation.errors[(group.oid, repeat, group.items[0].name)] = (
                    "is a row the form always has: it cannot be removed"
                )


def changes(form: FormDef, old: Rows, new: Rows) -> list[Change]:
    """Every value that differs between `old` and `new`, in form order."""
    found: list[Change] = []
    for group in form.item_groups:
        old_group, new_group = old.get(group.oid, {}), new.get(group.oid, {})
        for repeat in sorted(set(old_group) | set(new_group)):
            old_row, new_row = old_group.get(repeat, {}), new_group.get(repeat, {})
            for item in group.items:
                before, after = old_row.get(item.name), new_row.get(item.name)
                if before != after:
                    found.append((group.oid, repeat, item.name, before, after))
    return found


def item_changes(
    form: FormDef, found: list[Change], reasons: Mapping[FieldKey, str | None]
) -> list[ItemChange]:
    oids = {name: oid for oid, name in form.item_names.items()}
    return [
        ItemChange(group, repeat, oids[name], before, after, reasons.get((group, repeat, name)))
        for group, repeat, name, before, after in found
    ]


def _change_reasons(
    form: FormDef,
    found: list[Change],
    evaluation: FormEvaluation,
    edit: FormEdit,
    old_status: str,
) -> dict[FieldKey, str | None]:
    """The reason recorded with each change; flags user changes to a complete form without one."""
    derived = {item.name for group in form.item_groups for item in group.items if item.is_derived}
    reasons: dict[FieldKey, str | None] = {}
    for group_oid, repeat, name, before, after in found:
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

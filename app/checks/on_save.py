"""Edit checks on save: the checks a change's forms feed, run on the casebook as the change
will leave it, before anything is written (the evaluate step of the write path).

Only the checks whose inputs changed run: those on the changed forms and those reading them
(`checks_reading`), on every instance of their form. A hard check refuses the save of its
own form instance only; broken by a change to another form (or found by a batch run over
data stored before it existed), it opens a query like a soft one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlmodel import Session

from app.checks.evaluate import CheckResult, CompiledCheck, checks_reading, run_checks
from app.checks.subject_data import FormInstance, SubjectData, VisitInstance, load_subject_data
from app.crf.plans import FormPlan, VisitPlan
from app.models import Subject
from app.study.loader import LOG_EVENT_OID, Study


def check_form_changes(
    session: Session, study: Study, subject: Subject, plans: Sequence[FormPlan], today: date
) -> list[CheckResult]:
    """The results of the checks that the forms of `plans` feed (none if no check does)."""
    checks = checks_reading(study, {plan.form.name for plan in plans})
    if not checks:
        return []
    data = load_subject_data(session, study, subject, forms_read(study, checks))
    for plan in plans:
        _overlay(data, plan)
    return run_checks(study, data, checks, today, changed=[plan.ref for plan in plans])


def check_visit_date(
    session: Session, study: Study, subject: Subject, visit: VisitPlan, today: date
) -> list[CheckResult]:
    """The results of the checks that read visit dates, anchors or study days, with the
    visit dated as `visit` will date it (a visit date is not refused by a check: what a
    check finds opens a query)."""
    checks = checks_reading(study, (), timing=True)
    if not checks:
        return []
    data = load_subject_data(session, study, subject, forms_read(study, checks))
    instance = next(
        (
            v
            for v in data.visits
            if (v.event_oid, v.repeat) == (visit.event_oid, visit.event_repeat)
        ),
        None,
    )
    if instance is None:
        data.visits.append(VisitInstance(visit.event_oid, visit.event_repeat, visit.new))
    else:
        instance.date = visit.new
    dated = (visit.event_oid, visit.event_repeat)
    return run_checks(study, data, checks, today, dated_visit=dated)


def forms_read(study: Study, checks: Sequence[CompiledCheck]) -> set[str]:
    """The OIDs of the forms `checks` read, and of the anchors' forms (a visit's study day
    counts from an anchor): all a save's checks need of the stored casebook."""
    names = {name for check in checks for name in check.forms_read}
    names |= {anchor.source.split(".")[0] for anchor in study.schedule.anchors}
    return {form.oid for name in names if (form := study.form_by_name(name)) is not None}


def refusals(results: Sequence[CheckResult], plan: FormPlan) -> list[CheckResult]:
    """The failing hard checks of the form instance the user saved, on the rows the save
    changes (a row stored before, untouched by this save, gets a query instead: an old row
    must not block adding a new adverse event)."""
    changed_rows = {(change.group_oid, change.repeat) for change in plan.changes}
    return [
        r for r in results
        if r.hard and not r.passed and r.ref == plan.ref
        and (not _per_row(r, plan) or (r.group_oid, r.group_repeat) in changed_rows)
    ]  # fmt: skip


def _per_row(result: CheckResult, plan: FormPlan) -> bool:
    return any(g.oid == result.group_oid and g.repeating for g in plan.form.item_groups)


def _overlay(data: SubjectData, plan: FormPlan) -> None:
    """Put the values and status `plan` will store into the loaded casebook."""
    instance = next((i for i in data.instances(plan.form.oid) if i.ref == plan.ref), None)
    if instance is None:
        instance = FormInstance(plan.ref, plan.form, plan.status)
        if plan.ref.event_oid == LOG_EVENT_OID:
            logs = data.logs.setdefault(plan.form.name, [])
            logs.append(instance)
            logs.sort(key=lambda i: i.ref.form_repeat)
        else:
            visit = data.visit_of(plan.ref)
            if visit is None:  # the form's save stores the visit too
                visit = VisitInstance(plan.ref.event_oid, plan.ref.event_repeat, None)
                data.visits.append(visit)
            visit.forms[plan.form.name] = instance
    instance.status = plan.status
    names = plan.form.item_names
    for change in plan.changes:
        row = instance.rows.setdefault(change.group_oid, {}).setdefault(change.repeat, {})
        row[names[change.item_oid]] = change.new
    for rows in instance.rows.values():
        for repeat in [r for r, values in rows.items() if not any(values.values())]:
            del rows[repeat]  # a removed row

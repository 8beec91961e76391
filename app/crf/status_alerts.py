"""What a reached status rests on, checked again when a later change touches it.

A subject enrolled on the strength of its eligibility form stays enrolled when that form is
corrected; the change is never silent. Each requirement of a transition the subject has made
says what a change that breaks it does (`when_undone` in `subject_path.yaml`): `refuse` it,
or save it and open a status alert for the investigator, closed again by the change that
makes the requirement hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from app.crf.plans import AlertPlan, FormPlan
from app.crf.reads import SubjectValues
from app.crf.status import open_alerts, reached_statuses, unmet_requirements
from app.models import FormStatus, Subject
from app.study.loader import Study
from app.study.model import Undone


@dataclass(frozen=True)
class RequirementCheck:
    """The requirements a change breaks and the alerts it opens or closes."""

    refusals: list[str]
    alerts: list[AlertPlan]


def check_requirements(
    session: Session,
    study: Study,
    subject: Subject,
    values: SubjectValues,
    plans: list[FormPlan],
) -> RequirementCheck:
    """Check, with the values the change will store, the requirements of the statuses the
    subject has reached that read what `plans` change."""
    indexes: set[int] = set()
    for plan in plans:
        names = plan.form.item_names
        changed = {names[c.item_oid] for c in plan.changes if c.item_oid in names}
        indexes |= study.dependencies.transitions_reading(plan.form, changed, plan.status_changed)
    if not indexes:
        return RequirementCheck([], [])
    reached = reached_statuses(session, subject)
    completed = {plan.form.oid for plan in plans if plan.status == FormStatus.COMPLETE}
    alerts = {(a.status, a.requirement): a for a in open_alerts(session, subject)}
    refusals: list[str] = []
    changes: list[AlertPlan] = []
    opened: set[tuple[str, str]] = set()
    for index in sorted(indexes):
        transition = study.subject_path.transitions[index]
        if transition.to not in reached:
            continue
        unmet = set(
            unmet_requirements(session, study, subject, transition.requires, values, completed)
        )
        for requirement in transition.requires:
            key = (transition.to, requirement.message)
            if requirement.message not in unmet:
                if key in alerts:
                    changes.append(AlertPlan(*key, alert=alerts.pop(key)))
            elif requirement.when_undone == Undone.REFUSE:
                label = _status_label(study, transition.to)
                refusals.append(
                    f"Not saved: the subject is {label}, which needs this to hold: "
                    f"{requirement.message}"
                )
            elif key not in alerts and key not in opened:
                changes.append(AlertPlan(*key))
                opened.add(key)
    return RequirementCheck(refusals, changes)


def _status_label(study: Study, code: str) -> str:
    status = study.subject_path.status(code)
    return (status.label if status else code).lower()

"""The escalation's gates on the write path: an enrolment at a level (EC024) and a save that
dates an infusion or changes its level (EC030-EC032) are refused with the rule's reason.

The gates are skipped for a study without an escalation casebook, for subjects outside its
two phases, and for an ODM import (`app.crf.write`): an import restores what another system
recorded, and the board's decisions of that time are not in this one.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlmodel import Session, col

from app.crf.engine import FieldKey, FormEvaluation
from app.crf.plans import FormPlan
from app.escalation.study_state import study_escalation
from app.models import StudyRecord, Subject
from app.study.loader import Study, find_item
from app.study.model import DoseLevel


def enrolment_refusal(
    session: Session, study: Study, level: str | None, phase: str | None, today: date
) -> str | None:
    """Why an enrolment at `level` in `phase` today is refused; None: it may go ahead."""
    if study.escalation is None or study.escalation.casebook is None:
        return None
    return study_escalation(session, study, today).enrolment_refusal(level, phase)


def serialise_escalation(session: Session, study: Study) -> None:
    """Hold the study's row until the transaction ends, so that two infusions (or an infusion
    and a board decision) checked at once on PostgreSQL cannot both take a cohort's last place:
    the second waits and sees the first. SQLite serialises write transactions already."""
    session.execute(
        select(col(StudyRecord.id)).where(col(StudyRecord.id) == study.id).with_for_update()
    )


def open_dose_levels(session: Session, study: Study, today: date) -> tuple[DoseLevel, ...]:
    """The dose levels an enrolment may assign today, in either phase (all of the study's
    levels without an escalation casebook)."""
    rules = study.escalation
    if rules is None or rules.casebook is None:
        return study.info.dose_levels
    state = study_escalation(session, study, today)
    phases = (rules.casebook.escalation_phase, rules.casebook.expansion_phase)
    return tuple(
        level
        for level in study.info.dose_levels
        if any(state.enrolment_refusal(level.code, phase) is None for phase in phases)
    )


def infusion_refusal(
    session: Session,
    study: Study,
    subject: Subject,
    plan: FormPlan,
    evaluation: FormEvaluation,
) -> tuple[FieldKey, str] | None:
    """The field and the reason when `plan` dates an infusion (or changes its level) that
    the escalation refuses on that date; None otherwise."""
    rules = study.escalation
    if rules is None or rules.casebook is None or plan.form.oid != rules.casebook.infusion.form:
        return None
    casebook = rules.casebook
    if subject.phase not in (casebook.escalation_phase, casebook.expansion_phase):
        return None
    names = {casebook.infusion.date, casebook.infusion.level}
    oids = {
        item.oid for group in plan.form.item_groups for item in group.items if item.name in names
    }
    if not any(change.item_oid in oids for change in plan.changes):
        return None
    found = find_item(plan.form, casebook.infusion.date)
    if found is None:
        return None
    group = found[0]
    values = evaluation.values.get(group.oid, {}).get(1, {})
    text = values.get(casebook.infusion.date) or ""
    if len(text) < 10:
        return None
    on = date.fromisoformat(text[:10])
    level = values.get(casebook.infusion.level) or subject.dose_level
    if level is None:
        return None
    serialise_escalation(session, study)
    state = study_escalation(session, study, on, excluding=subject.id)
    refused = state.infusion_refusal(level, subject.phase, on)
    return ((group.oid, 1, casebook.infusion.date), refused) if refused else None

"""The subject's path through the study: which status changes are open, what blocks them, and
making one (dated, audited, allowed only in order and only when the casebook supports it).

The statuses and their requirements are study data (`subject_path.yaml`); the dose level
offered at enrolment comes from `open_dose_levels`, the one place the 3+3 engine will decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from app import audit
from app.access import Access, Permission
from app.crf.engine import other_form_scope
from app.crf.service import subject_form_values
from app.expressions import ExpressionError, compile_expression
from app.models import FormData, FormStatus, StudyEventData, Subject
from app.study.loader import Study
from app.study.model import DoseLevel, Requirement, Transition

PERMISSION_OF = {"change_status": Permission.CHANGE_STATUS, "enrol": Permission.ENROL}


class StatusRefused(Exception):
    """A status change that cannot be made now; the message says why."""


@dataclass(frozen=True)
class TransitionOption:
    """A status change from the subject's current status, with what still blocks it."""

    transition: Transition
    blockers: tuple[str, ...]
    permitted: bool

    @property
    def ready(self) -> bool:
        return self.permitted and not self.blockers


def open_dose_levels(study: Study) -> tuple[DoseLevel, ...]:
    """Dose levels an enrolment may assign now. Until the 3+3 engine exists, every level of
    the study: the authorised user chooses."""
    return study.info.dose_levels


def transition_options(
    session: Session, study: Study, access: Access, subject: Subject
) -> list[TransitionOption]:
    """Every status change that leaves the subject's current status."""
    options = []
    for transition in study.subject_path.transitions:
        if subject.status not in transition.sources:
            continue
        permission = PERMISSION_OF[transition.permission]
        options.append(
            TransitionOption(
                transition,
                tuple(unmet_requirements(session, study, subject, transition)),
                access.can(permission, subject.site_id),
            )
        )
    return options


def unmet_requirements(
    session: Session, study: Study, subject: Subject, transition: Transition
) -> list[str]:
    """Messages of the requirements the casebook does not meet yet."""
    names = {
        name
        for requirement in transition.requires
        if requirement.condition
        for name in compile_expression(requirement.condition).variables
        if study.form_by_name(name) is not None
    }
    scope = other_form_scope(study, names, subject_form_values(session, study, subject, names))
    scope["subject"] = {"dose_level": subject.dose_level, "phase": subject.phase}
    return [r.message for r in transition.requires if not _met(session, subject, r, scope)]


def _met(session: Session, subject: Subject, requirement: Requirement, scope: dict) -> bool:  # type: ignore[type-arg]
    if requirement.form is not None:
        statuses = session.exec(
            select(FormData.status)
            .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
            .where(StudyEventData.subject_id == subject.id, FormData.form_oid == requirement.form)
        ).all()
        return FormStatus.COMPLETE in statuses
    assert requirement.condition is not None
    try:
        return compile_expression(requirement.condition).evaluate(scope) is True
    except ExpressionError:
        return False  # a missing value: the requirement is not met yet


def change_status(
    session: Session,
    study: Study,
    *,
    access: Access,
    subject: Subject,
    to: str,
    effective: date,
    reason: str | None,
    dose_level: str | None,
    phase: str | None,
    actor: audit.Actor,
    now: datetime,
) -> Subject:
    """Move the subject along a transition of the study's path. Commits; audited.

    Raises StatusRefused (naming every unmet requirement) when the transition does not leave
    the current status, the casebook does not support it, or the dose level is not open;
    AccessDenied without the transition's permission.
    """
    option = next(
        (o for o in transition_options(session, study, access, subject) if o.transition.to == to),
        None,
    )
    current = study.subject_path.status(subject.status)
    if option is None:
        label = current.label if current else subject.status
        raise StatusRefused(
            f"A subject who is {label.lower()} cannot move to {to.replace('_', ' ')}."
        )
    access.require(PERMISSION_OF[option.transition.permission], subject.site_id)
    if option.blockers:
        raise StatusRefused(" ".join(option.blockers))
    if effective > now.date():
        raise StatusRefused("The date of the change cannot be in the future.")
    assignment = {}
    if option.transition.assign_dose_level:
        if dose_level not in {level.code for level in open_dose_levels(study)}:
            raise StatusRefused(f"Choose a dose level open for enrolment, not {dose_level!r}.")
        if phase not in {p.code for p in study.info.phases}:
            raise StatusRefused(f"Choose the study phase, not {phase!r}.")
        assignment = {"dose_level": dose_level, "phase": phase}
    old_status = subject.status
    result = session.execute(
        update(Subject)
        .where(col(Subject.id) == subject.id, col(Subject.status) == old_status)
        .values(status=to, status_date=effective, **assignment)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise StatusRefused("Someone else changed this subject's status meanwhile; reload.")
    path = audit.DataPath(subject)
    details = f"effective {effective.isoformat()}"
    if assignment:
        details += f"; dose level {dose_level}, phase {phase}"
    audit.record(
        session, actor=actor, action="subject_status", path=path, old_value=old_status,
        new_value=to, reason=reason, details=details, at=now,
    )  # fmt: skip
    session.commit()
    session.refresh(subject)
    return subject

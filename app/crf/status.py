"""The subject's path through the study: which status changes are open, what blocks them, and
whether what a reached status rests on still holds.

The statuses and their requirements are study data (`subject_path.yaml`); the dose levels
offered at enrolment are those the escalation opens (`app.escalation.write_gates`).
Status changes themselves are made through `app.crf.write.apply`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlmodel import Session, col, select

from app.access import Access, Permission
from app.audit import AuditAction
from app.crf.engine import other_form_scope
from app.crf.reads import SubjectValues
from app.expressions import ExpressionError, compile_expression
from app.models import AuditRecord, FormData, FormStatus, StatusAlert, StudyEventData, Subject
from app.study.loader import Study
from app.study.model import Requirement, Transition

PERMISSION_OF = {"change_status": Permission.CHANGE_STATUS, "enrol": Permission.ENROL}


@dataclass(frozen=True)
class TransitionOption:
    """A status change from the subject's current status, with what still blocks it."""

    transition: Transition
    blockers: tuple[str, ...]
    permitted: bool

    @property
    def ready(self) -> bool:
        return self.permitted and not self.blockers


def transition_to(study: Study, subject: Subject, to: str) -> Transition | None:
    """The transition of the path from the subject's current status to `to`, if there is one."""
    return next(
        (t for t in study.subject_path.transitions if t.to == to and subject.status in t.sources),
        None,
    )


def transition_options(
    session: Session, study: Study, access: Access, subject: Subject
) -> list[TransitionOption]:
    """Every status change that leaves the subject's current status."""
    values = SubjectValues(session, study, subject)
    return [
        TransitionOption(
            transition,
            tuple(unmet_requirements(session, study, subject, transition.requires, values)),
            access.can(PERMISSION_OF[transition.permission], subject.site_id),
        )
        for transition in study.subject_path.transitions
        if subject.status in transition.sources
    ]


def unmet_requirements(
    session: Session,
    study: Study,
    subject: Subject,
    requirements: Collection[Requirement],
    values: SubjectValues,
    completed: Collection[str] = (),
) -> list[str]:
    """Messages of the `requirements` the casebook does not meet. `values` gives the forms'
    values (as a change will leave them); forms in `completed` count as complete."""
    names = {
        name
        for requirement in requirements
        if requirement.condition
        for name in compile_expression(requirement.condition).variables
        if study.form_by_name(name) is not None
    }
    scope = other_form_scope(study, names, values.values(names))
    scope["subject"] = {"dose_level": subject.dose_level, "phase": subject.phase}
    return [
        requirement.message
        for requirement in requirements
        if not _met(session, subject, requirement, scope, completed)
    ]


def _met(
    session: Session,
    subject: Subject,
    requirement: Requirement,
    scope: Mapping[str, object],
    completed: Collection[str],
) -> bool:
    if requirement.form is not None:
        if requirement.form in completed:
            return True
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


def reached_statuses(session: Session, subject: Subject) -> set[str]:
    """Every status the subject has held: its current one and those its history records."""
    history = session.exec(
        select(AuditRecord.new_value).where(
            AuditRecord.subject_id == subject.id,
            AuditRecord.action == AuditAction.SUBJECT_STATUS,
        )
    )
    return {subject.status, *(status for status in history if status)}


def open_alerts(session: Session, subject: Subject) -> list[StatusAlert]:
    """The subject's status alerts still open, oldest first."""
    return list(
        session.exec(
            select(StatusAlert)
            .where(StatusAlert.subject_id == subject.id, col(StatusAlert.closed_at).is_(None))
            .order_by(col(StatusAlert.id))
        )
    )

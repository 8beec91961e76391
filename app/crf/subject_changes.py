"""The evaluate step for changes to a subject rather than a form: a new subject, a visit date,
a status change along the study's path, a status imported from another system."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, select

from app.crf.changes import (
    FormRefused,
    ImportedStatus,
    NewSubject,
    NotFound,
    StatusRefused,
    SubjectKeyTaken,
    SubjectStatus,
    VisitDate,
    check_reasons,
)
from app.crf.plans import StatusPlan, SubjectPlan, VisitPlan
from app.crf.reads import SubjectValues, event_repeats
from app.crf.status import unmet_requirements
from app.escalation.write_gates import enrolment_refusal
from app.models import Site, StudyEventData, Subject
from app.study.loader import Study
from app.study.model import Transition


def plan_new_subject(session: Session, study: Study, site: Site, change: NewSubject) -> SubjectPlan:
    """A subject at the start of the study's path; a given SubjectKey must be new."""
    if change.subject_key is not None:
        taken = session.exec(
            select(Subject.id).where(
                Subject.study_id == site.study_id, Subject.subject_key == change.subject_key
            )
        )
        if taken.first() is not None:
            raise SubjectKeyTaken(f"a subject {change.subject_key} already exists")
    assert site.id is not None
    return SubjectPlan(site.study_id, site.id, change.subject_key, study.subject_path.initial)


def visit_event(
    session: Session, study: Study, subject: Subject, change: VisitDate
) -> StudyEventData | None:
    """The visit's stored row, if any; NotFound for a visit or repeat the casebook does not
    offer (a repeating visit is added by dating the repeat after the last one)."""
    visit = study.visit(change.event_oid)
    if visit is None:
        raise NotFound(f"visit {change.event_oid}")
    repeats = event_repeats(session, subject, change.event_oid) if visit.repeating else set()
    allowed = repeats | {max(repeats, default=0) + 1} if visit.repeating else {1}
    if change.event_repeat not in allowed:
        raise NotFound(f"visit {change.event_oid} #{change.event_repeat}")
    return session.exec(
        select(StudyEventData).where(
            StudyEventData.subject_id == subject.id,
            StudyEventData.event_oid == change.event_oid,
            StudyEventData.repeat_key == change.event_repeat,
        )
    ).first()


def plan_visit_date(
    event: StudyEventData | None, change: VisitDate, today: date
) -> VisitPlan | None:
    """The visit dated or its date corrected (with a reason); None when the date is the same.
    `today` is the site's local date: a visit cannot be dated after it."""
    if change.visit_date > today:
        raise FormRefused(
            f"A visit date cannot be in the future: {change.visit_date.isoformat()} is after "
            f"today ({today.isoformat()} at the site)."
        )
    check_reasons(change.reason)
    old = event.visit_date if event else None
    if old == change.visit_date:
        return None
    if old is not None and not (change.reason and change.reason.strip()):
        raise FormRefused("Give a reason for changing the visit date.")
    return VisitPlan(
        change.event_oid, change.event_repeat, event, old, change.visit_date, change.reason
    )


def plan_status(
    session: Session,
    study: Study,
    subject: Subject,
    transition: Transition,
    change: SubjectStatus,
    today: date,
) -> StatusPlan:
    """A move along `transition`; refused (naming every unmet requirement) when the casebook
    does not support it, the date is after the site's today, or the dose level is not open."""
    values = SubjectValues(session, study, subject)
    blockers = unmet_requirements(session, study, subject, transition.requires, values)
    if blockers:
        raise StatusRefused(" ".join(blockers))
    if change.effective > today:
        raise StatusRefused(
            f"The date of the change cannot be in the future: {change.effective.isoformat()} "
            f"is after today ({today.isoformat()} at the site)."
        )
    check_reasons(change.reason)
    dose_level = phase = None
    if transition.assign_dose_level:
        if change.dose_level not in {level.code for level in study.info.dose_levels}:
            raise StatusRefused(f"Choose a dose level of the study, not {change.dose_level!r}.")
        if change.phase not in {p.code for p in study.info.phases}:
            raise StatusRefused(f"Choose the study phase, not {change.phase!r}.")
        refused = enrolment_refusal(
            session, study, change.dose_level, change.phase, change.effective
        )
        if refused:
            raise StatusRefused(refused)
        dose_level, phase = change.dose_level, change.phase
    return StatusPlan(
        subject.status, transition.to, change.effective, dose_level, phase, change.reason
    )


IMPORTED_REASON = "status in the source system (imported)"


def plan_imported_status(study: Study, subject: Subject, change: ImportedStatus) -> StatusPlan:
    """The status, dose level and phase the source system recorded, each a code of its list."""
    choices = {
        "status": (change.status, {s.code for s in study.subject_path.statuses}),
        "dose level": (change.dose_level, {d.code for d in study.info.dose_levels}),
        "phase": (change.phase, {p.code for p in study.info.phases}),
    }
    for what, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            raise StatusRefused(f"{value!r} is not a {what} of {study.info.oid}")
    return StatusPlan(
        subject.status, change.status, change.effective, change.dose_level, change.phase,
        IMPORTED_REASON,
    )  # fmt: skip

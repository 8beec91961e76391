"""A subject's casebook: every visit with its forms and their statuses, and the log forms."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session, col

from app.models import FormData, FormStatus, StudyEventData, Subject
from app.study.loader import LOG_EVENT_OID, Study


@dataclass(frozen=True)
class FormEntry:
    form_oid: str
    title: str
    repeat: int
    status: str
    mandatory: bool


@dataclass(frozen=True)
class VisitEntry:
    event_oid: str
    name: str
    repeat: int
    visitnum: float | None
    timing: str
    forms: tuple[FormEntry, ...]


def build_casebook(session: Session, study: Study, subject: Subject) -> list[VisitEntry]:
    """Visits in schedule order (then the log forms), each form with its status."""
    statuses: dict[tuple[str, int, str, int], str] = {}
    statement = (
        select(
            col(StudyEventData.event_oid),
            col(StudyEventData.repeat_key),
            col(FormData.form_oid),
            col(FormData.repeat_key),
            col(FormData.status),
        )
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .where(col(StudyEventData.subject_id) == subject.id)
    )
    for event_oid, event_repeat, form_oid, form_repeat, status in session.execute(statement):
        statuses[(event_oid, event_repeat, form_oid, form_repeat)] = status

    def status_of(event_oid: str, form_oid: str) -> str:
        return statuses.get((event_oid, 1, form_oid, 1), FormStatus.NOT_STARTED)

    visits = []
    for visit in study.schedule.visits:
        forms = tuple(
            FormEntry(
                entry.form,
                study.form(entry.form).title,
                1,
                status_of(visit.oid, entry.form),
                entry.mandatory,
            )
            for entry in visit.forms
        )
        visits.append(
            VisitEntry(visit.oid, visit.name, 1, visit.visitnum, _timing(study, visit.oid), forms)
        )
    logs = tuple(
        FormEntry(oid, study.form(oid).title, 1, status_of(LOG_EVENT_OID, oid), False)
        for oid in study.log_form_oids()
    )
    visits.append(VisitEntry(LOG_EVENT_OID, "Logs (any time)", 1, None, "", logs))
    return visits


def _timing(study: Study, event_oid: str) -> str:
    visit = study.visit(event_oid)
    if visit is None or visit.anchor is None or visit.day is None:
        return "unscheduled" if visit is not None else ""
    anchor = next(a for a in study.schedule.anchors if a.id == visit.anchor)
    window = ""
    if visit.window and (visit.window.earliest, visit.window.latest) != (visit.day, visit.day):
        window = f" (window {visit.window.earliest:+d} to {visit.window.latest:+d})"
    return f"day {visit.day:+d} from {anchor.label.lower()}{window}"

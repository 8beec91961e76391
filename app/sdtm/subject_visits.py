"""The visits a subject had (SDTM SV): read from the database, one record per dated visit.

A visit happened when it has a visit date, whether or not forms were entered at it; a visit
without a date (missed, or not yet done) is not in SV. An SV record's source row is the visit
itself (no form, no values), so `visit`, `visitnum`, `visit_date`, `epoch` and `study_day`
derive its VISIT, VISITNUM, SVSTDTC, EPOCH and SVSTDY as they do for the visit's forms.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.models import StudyEventData
from app.sdtm.derive import DatedVisit, RecordContext, RowValues, SubjectData, Value, derivation
from app.sdtm.subject_elements import marks_period
from app.study.loader import Study
from app.study.model import Visit


def read_visits(session: Session, subject_id: int) -> tuple[DatedVisit, ...]:
    """Every dated visit of the subject, in creation order."""
    statement = (
        select(
            col(StudyEventData.event_oid),
            col(StudyEventData.repeat_key),
            col(StudyEventData.visit_date),
            col(StudyEventData.id),
        )
        .where(StudyEventData.subject_id == subject_id)
        .where(col(StudyEventData.visit_date).is_not(None))
        .order_by(col(StudyEventData.id))
    )
    return tuple(
        DatedVisit(event_oid, repeat, visit_date, event_id)
        for event_oid, repeat, visit_date, event_id in session.exec(statement)
        if visit_date is not None and event_id is not None
    )


def visit_rows(data: SubjectData) -> list[RowValues]:
    """One source row per dated visit of the schedule (the SV records), in creation order."""
    return [
        RowValues(
            form_oid="",
            form_name="",
            event_oid=dated.event_oid,
            event_repeat=dated.repeat,
            form_repeat=0,
            item_group_oid="",
            group_repeat=0,
            visit_date=dated.visit_date,
            values={},
            order=dated.order,
        )
        for dated in data.visits
        if data.study.visit(dated.event_oid) is not None
    ]


def is_unplanned(study: Study, visit: Visit) -> bool:
    """An unplanned visit: a repeating one that does not mark its period, so it may happen at
    any time and any number of times (UNS). Early termination (once per subject) and
    long-term follow-up (the visits of their period) are planned."""
    return visit.repeating and not marks_period(study, visit)


def _visit_of(context: RecordContext) -> Visit | None:
    return None if context.row is None else context.study.visit(context.row.event_oid)


@derivation("planned_study_day")
def _planned_study_day(context: RecordContext) -> Value:
    """VISITDY: the planned study day of a scheduled visit timed from the study-day anchor
    (the schedule's day 0 is study day 1, RFSTDTC; no day 0); null for other visits."""
    visit = _visit_of(context)
    anchor = context.study.schedule.study_day_anchor
    if visit is None or visit.day is None or anchor is None or visit.anchor != anchor:
        return None
    return float(visit.day + 1 if visit.day >= 0 else visit.day)


@derivation("unplanned_description")
def _unplanned_description(context: RecordContext) -> Value:
    """SVUPDES of an unplanned visit (`is_unplanned`): the visit's name and the titles of the
    forms entered at it, in the schedule's order (`Unscheduled: Vital Signs, Chemistry`);
    null for planned visits."""
    visit, row = _visit_of(context), context.row
    if visit is None or row is None or not is_unplanned(context.study, visit):
        return None
    entered = {
        other.form_oid
        for other in context.data.rows
        if other.event_oid == row.event_oid and other.event_repeat == row.event_repeat
    }
    titles = [context.study.forms[form.form].title for form in visit.forms if form.form in entered]
    return f"{visit.name}: {', '.join(titles)}" if titles else visit.name

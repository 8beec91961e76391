"""The elements a subject went through (SDTM SE) and the EPOCH of every record, from one
computation (`subject_elements`), so that SE and the EPOCH of every domain agree.

Each study period of `forms/schedule.yaml` starts, for a subject, at its element's
`start_anchor` (the anchor's collected date or date/time, plus `start_day` days as a date) when
the element names one, the anchor is collected and the subject has a date on or after that
day (a dated visit, or a complete date on a log form: an adverse event the day after the
infusion starts follow-up; a subject who left on the infusion day has none); otherwise at
the subject's first dated visit that marks the period (`marks_period`). A period with neither
was not gone through. Periods are in start order and each lasts until the next starts, the
last one to the end of participation. A period without `element` still bounds its epoch but
gives no SE record.

A record's EPOCH is the epoch of the period whose [start, next start) holds its date:
compared at the precision both have (a date on the day a period starts at a time is in that
period). Records dated before the first period (prior medications, history) and records with
no complete date of their own and no visit date (an undated log entry) have no EPOCH.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from app.sdtm.derive import (
    RecordContext,
    SubjectData,
    Value,
    day_of,
    derivation,
    per_subject,
    registered_derivations,
)
from app.study.loader import Study
from app.study.model import DataType, Period, Visit

ELEMENT_PARTS = ("code", "name", "epoch", "order", "start")


@dataclass(frozen=True)
class SubjectElement:
    """A period the subject went through: when it started and when the next one started."""

    period: Period
    order: int | None
    """TAETORD: the element's position among the periods that have one (every arm has them
    all, in schedule order); None for a period without element."""
    start: str
    """ISO 8601 date, or date/time when the start is an anchor collected with its time."""
    end: str | None
    """The next period's start; None for the last one."""


@per_subject
def subject_elements(data: SubjectData) -> tuple[SubjectElement, ...]:
    """Every period the subject went through, in start order (see the module docstring)."""
    study = data.study
    first_visits: dict[str, date] = {}
    for dated in data.visits:
        visit = study.visit(dated.event_oid)
        if visit is not None and marks_period(study, visit):
            known = first_visits.get(visit.period)
            first_visits[visit.period] = min(known, dated.visit_date) if known else dated.visit_date
    last_date = max(_dates(data), default=None)
    starts: list[tuple[str, int, Period, str]] = []
    for index, period in enumerate(study.schedule.periods):
        start = _anchored_start(data, period, last_date)
        if start is None and period.oid in first_visits:
            start = first_visits[period.oid].isoformat()
        if start is not None:
            starts.append((start[:10], index, period, start))
    starts.sort(key=lambda entry: entry[:2])
    orders = _element_orders(study)
    return tuple(
        SubjectElement(
            period=period,
            order=orders.get(period.oid),
            start=start,
            end=starts[i + 1][3] if i + 1 < len(starts) else None,
        )
        for i, (_day, _index, period, start) in enumerate(starts)
    )


def recorded_elements(data: SubjectData) -> list[SubjectElement]:
    """The subject's SE records: its periods that have an element, in start order."""
    return [element for element in subject_elements(data) if element.period.element is not None]


def _se_record_element(context: RecordContext) -> SubjectElement:
    """The element of an SE record (record k of a subject is its k-th element)."""
    elements = recorded_elements(context.data)
    if context.seq > len(elements):
        raise ValueError("derives the records of a `subject_elements: true` source only")
    return elements[context.seq - 1]


def element_at(data: SubjectData, moment: str) -> SubjectElement | None:
    """The period the subject was in at `moment` (an ISO 8601 date or date/time)."""
    current = None
    for element in subject_elements(data):
        common = min(len(element.start), len(moment))
        if element.start[:common] <= moment[:common]:
            current = element
    return current


def marks_period(study: Study, visit: Visit) -> bool:
    """Whether a visit tells the period the subject is in: a scheduled visit, or an
    unscheduled one of a period without scheduled visits (long-term follow-up). Unscheduled
    visits of a period that has scheduled ones (UNS, early termination) may happen at any
    time, so their nominal period says nothing."""
    if visit.type == "scheduled":
        return True
    return not any(
        other.type == "scheduled" and other.period == visit.period
        for other in study.schedule.visits
    )


def _dates(data: SubjectData) -> Iterator[date]:
    """The subject's visit dates and the complete dates of its log forms."""
    yield from (dated.visit_date for dated in data.visits)
    study = data.study
    log_items = {
        study.forms[log.form].name: [
            item.name
            for group in study.forms[log.form].item_groups
            for item in group.items
            if item.type in (DataType.DATE, DataType.DATETIME, DataType.PARTIAL_DATE)
        ]
        for log in study.schedule.log_forms
    }
    for row in data.rows:
        for name in log_items.get(row.form_name, ()) if row.is_log else ():
            day = day_of(row.values.get(name))
            if day is not None:
                yield day


def _anchored_start(data: SubjectData, period: Period, last_date: date | None) -> str | None:
    element = period.element
    if element is None or element.start_anchor is None:
        return None
    moment = data.anchors.get(element.start_anchor)
    day = day_of(moment)
    if moment is None or day is None:
        return None
    start = day + timedelta(days=element.start_day)
    if last_date is None or last_date < start:
        return None
    return moment if element.start_day == 0 else start.isoformat()


def _element_orders(study: Study) -> dict[str, int]:
    periods = [period for period in study.schedule.periods if period.element is not None]
    return {period.oid: order for order, period in enumerate(periods, start=1)}


def _record_element(context: RecordContext, dtc: str | None) -> SubjectElement | None:
    """The period holding the record's date: the complete date in variable `dtc`, else the
    date of the visit of its source row (an SV record's row is its visit)."""
    moment = context.date_variable(dtc) if dtc else None
    if day_of(moment) is None:
        row = context.row
        moment = row.visit_date.isoformat() if row is not None and row.visit_date else None
    return None if moment is None else element_at(context.data, moment)


@derivation("epoch")
def _epoch(context: RecordContext, dtc: str | None = None) -> Value:
    """EPOCH of the period the subject was in on the record's date (variable `dtc` when it
    is a complete date, else the record's visit date); null before the first period and for
    records with neither date."""
    element = _record_element(context, dtc)
    return None if element is None else element.period.epoch


@derivation("element_order")
def _element_order(context: RecordContext, dtc: str | None = None) -> Value:
    """TAETORD of the element the subject was in on the record's date (as `epoch`)."""
    element = _record_element(context, dtc)
    return None if element is None or element.order is None else float(element.order)


@derivation("element")
def _element(context: RecordContext, part: str) -> Value:
    """A value of the SE record's element (record k of a subject is its k-th element in
    start order): `code` (ETCD), `name` (ELEMENT), `epoch`, `order` (TAETORD), `start`."""
    if part not in ELEMENT_PARTS:
        raise ValueError(f"unknown element part {part!r} (one of {', '.join(ELEMENT_PARTS)})")
    element = _se_record_element(context)
    assert element.period.element is not None
    values: dict[str, Value] = {
        "code": element.period.element.code,
        "name": element.period.element.name,
        "epoch": element.period.epoch,
        "order": None if element.order is None else float(element.order),
        "start": element.start,
    }
    return values[part]


@derivation("element_end")
def _element_end(context: RecordContext, dates: Sequence[str]) -> Value:
    """SEENDTC: when the next period started; for the last, the end of participation (the
    latest of the collected `dates`, as RFPENDTC), null while the subject is still in it."""
    element = _se_record_element(context)
    if element.end is not None:
        return element.end
    return registered_derivations()["participation_end"](context, dates=dates)

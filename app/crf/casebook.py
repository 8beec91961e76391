"""A subject's casebook: every visit with its timing, state and forms, then the log forms.

Visit timing: once an anchor date is known (consent, leukapheresis, infusion), each visit
timed from it gets a target date and window; a visit is *due* while today is in its window,
*overdue* after it without a visit date, and *in window* or *out of window* once dated. How
many of its forms are complete is counted apart: a dated visit is not a done one.
The study day counts from the anchor the schedule names (`study_day_anchor`; ZM001: the
infusion day, D0 = day 0, negative before; spec §4.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from sqlalchemy import select
from sqlmodel import Session, col

from app.crf.reads import SubjectValues
from app.models import FormData, FormStatus, ItemData, ItemGroupData, StudyEventData, Subject, pk
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import Visit


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
    target: date | None = None
    earliest: date | None = None
    latest: date | None = None
    visit_date: date | None = None
    state: str = ""
    """Where the visit stands against its window: upcoming, due, overdue (not dated yet),
    in_window, out_of_window (dated); empty when untimed or its anchor date is not known.
    Being dated says nothing of its forms: see `forms_complete`."""
    study_day: int | None = None
    repeating: bool = False

    @property
    def forms_complete(self) -> int:
        return sum(form.status == FormStatus.COMPLETE for form in self.forms)

    @property
    def forms_not_done(self) -> int:
        return sum(form.status == FormStatus.NOT_DONE for form in self.forms)


@dataclass(frozen=True)
class Casebook:
    visits: list[VisitEntry]
    anchors: dict[str, date]
    next_repeats: dict[str, int]
    """Event OID (repeating visits) or form OID (repeating log forms) -> next repeat key."""


def anchor_dates(session: Session, study: Study, subject: Subject) -> dict[str, date]:
    """Known anchor dates by anchor id, from the forms they are declared on."""
    sources = {anchor.id: anchor.source.split(".") for anchor in study.schedule.anchors}
    values = SubjectValues(session, study, subject).values({form for form, _ in sources.values()})
    dates = {}
    for anchor_id, (form, item) in sources.items():
        text = values.get(form, {}).get(item)
        if text and len(text) >= 10:
            dates[anchor_id] = date.fromisoformat(text[:10])
    return dates


def study_day(study: Study, anchors: dict[str, date], day: date | None) -> int | None:
    """Days from the study-day anchor (its day = 0), or None before its date is known or when
    the study counts no study days."""
    anchor = study.schedule.study_day_anchor
    if day is None or anchor is None or anchor not in anchors:
        return None
    return (day - anchors[anchor]).days


def build_casebook(session: Session, study: Study, subject: Subject, today: date) -> Casebook:
    """Visits in schedule order (repeating visits once per occurrence), then the log forms."""
    events = {
        (event.event_oid, event.repeat_key): event
        for event in session.execute(
            select(StudyEventData).where(col(StudyEventData.subject_id) == subject.id)
        ).scalars()
    }
    statuses: dict[tuple[str, int, str, int], str] = {}
    for event_oid, event_repeat, form_oid, form_repeat, status in session.execute(
        select(
            col(StudyEventData.event_oid),
            col(StudyEventData.repeat_key),
            col(FormData.form_oid),
            col(FormData.repeat_key),
            col(FormData.status),
        )
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .where(col(StudyEventData.subject_id) == subject.id)
    ):
        statuses[(event_oid, event_repeat, form_oid, form_repeat)] = status
    anchors = anchor_dates(session, study, subject)

    def forms_of(visit: Visit, repeat: int) -> tuple[FormEntry, ...]:
        return tuple(
            FormEntry(
                entry.form,
                study.form(entry.form).title,
                1,
                statuses.get((visit.oid, repeat, entry.form, 1), FormStatus.NOT_STARTED),
                entry.mandatory,
            )
            for entry in visit.forms
        )

    dates = {key: event.visit_date for key, event in events.items()}
    visits, next_repeats = _scheduled(study, subject, dates, anchors, today, forms_of)
    visits.append(_logs(study, statuses, next_repeats))
    return Casebook(visits, anchors, next_repeats)


def _scheduled(
    study: Study,
    subject: Subject,
    dates: dict[tuple[str, int], date | None],
    anchors: dict[str, date],
    today: date,
    forms_of: Callable[[Visit, int], tuple[FormEntry, ...]],
) -> tuple[list[VisitEntry], dict[str, int]]:
    """The scheduled visits (repeating ones once per stored occurrence, `dates` holding every
    stored visit and its date) timed at `today`, and the next repeat of each repeating visit."""
    status = study.subject_path.status(subject.status)
    active = status is None or not status.final  # no visit is due once a subject has left
    visits: list[VisitEntry] = []
    next_repeats: dict[str, int] = {}
    for visit in study.schedule.visits:
        repeats = sorted(r for (oid, r) in dates if oid == visit.oid)
        if visit.repeating:
            next_repeats[visit.oid] = max(repeats, default=0) + 1
        else:
            repeats = [1]
        for repeat in repeats:
            visits.append(
                _timed(
                    visit, repeat, forms_of(visit, repeat), anchors, dates.get((visit.oid, repeat)),
                    today, study, active,
                )
            )  # fmt: skip
    return visits, next_repeats


def timed_visits(
    session: Session, study: Study, subjects: Sequence[Subject], today: Callable[[Subject], date]
) -> dict[int, list[VisitEntry]]:
    """The scheduled visits of many subjects with their window states at each one's `today`,
    as their casebooks show them (without forms), read in three statements whatever their
    number: the dashboard's overdue visits."""
    ids = [pk(subject) for subject in subjects]
    dates: dict[int, dict[tuple[str, int], date | None]] = {i: {} for i in ids}
    for subject_id, event_oid, repeat, visit_date in session.execute(
        select(
            col(StudyEventData.subject_id), col(StudyEventData.event_oid),
            col(StudyEventData.repeat_key), col(StudyEventData.visit_date),
        ).where(col(StudyEventData.subject_id).in_(ids))
    ):  # fmt: skip
        dates[subject_id][(event_oid, repeat)] = visit_date
    anchors = _anchor_dates_of(session, study, ids)
    return {
        pk(subject): _scheduled(
            study, subject, dates[pk(subject)], anchors.get(pk(subject), {}), today(subject),
            lambda _visit, _repeat: (),
        )[0]
        for subject in subjects
    }  # fmt: skip


def _anchor_dates_of(session: Session, study: Study, ids: list[int]) -> dict[int, dict[str, date]]:
    """`anchor_dates` of many subjects: each anchor read from the first instance of its form
    in schedule order, as `SubjectValues` reads it."""
    order = {visit.oid: index for index, visit in enumerate(study.schedule.visits)}
    sources: dict[tuple[str, str], str] = {}
    for anchor in study.schedule.anchors:
        form_name, item_name = anchor.source.split(".")
        form = study.form_by_name(form_name)
        item = next(
            (i for g in form.item_groups if not g.repeating for i in g.items if i.name == item_name),
            None,
        ) if form else None  # fmt: skip
        if form is not None and item is not None:
            sources[(form.oid, item.oid)] = anchor.id
    if not sources:
        return {}
    first: dict[tuple[int, str], tuple[tuple[int, int, int], int]] = {}
    for subject_id, event_oid, event_repeat, form_oid, form_repeat, form_id in session.execute(
        select(
            col(StudyEventData.subject_id), col(StudyEventData.event_oid),
            col(StudyEventData.repeat_key), col(FormData.form_oid), col(FormData.repeat_key),
            col(FormData.id),
        )
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .where(
            col(StudyEventData.subject_id).in_(ids),
            col(FormData.form_oid).in_({form for form, _ in sources}),
        )
    ):  # fmt: skip
        position = (order.get(event_oid, len(order)), event_repeat, form_repeat)
        known = first.get((subject_id, form_oid))
        if known is None or position < known[0]:
            first[(subject_id, form_oid)] = (position, form_id)
    forms = {form_id: key for key, (_, form_id) in first.items()}
    found: dict[int, dict[str, date]] = {}
    for form_id, item_oid, value in session.execute(
        select(col(ItemGroupData.form_data_id), col(ItemData.item_oid), col(ItemData.value))
        .join(ItemData, col(ItemData.item_group_data_id) == ItemGroupData.id)
        .where(
            col(ItemGroupData.form_data_id).in_(forms),
            col(ItemGroupData.repeat_key) == 1,
            col(ItemData.item_oid).in_({item for _, item in sources}),
        )
    ):
        subject_id, form_oid = forms[form_id]
        anchor_id = sources.get((form_oid, item_oid))
        if anchor_id is not None and value and len(value) >= 10:
            found.setdefault(subject_id, {})[anchor_id] = date.fromisoformat(value[:10])
    return found


def _timed(
    visit: Visit,
    repeat: int,
    forms: tuple[FormEntry, ...],
    anchors: dict[str, date],
    visit_date: date | None,
    today: date,
    study: Study,
    active: bool,
) -> VisitEntry:
    entry = VisitEntry(
        visit.oid, visit.name, repeat, visit.visitnum, _timing(study, visit), forms,
        visit_date=visit_date, study_day=study_day(study, anchors, visit_date),
        repeating=visit.repeating,
    )  # fmt: skip
    base = anchors.get(visit.anchor or "")
    if base is None or visit.day is None:
        return entry
    earliest, latest = visit.day, visit.day
    if visit.window is not None:
        earliest, latest = visit.window.earliest, visit.window.latest
    first, last = base + timedelta(days=earliest), base + timedelta(days=latest)
    if visit_date is not None:
        state = "in_window" if first <= visit_date <= last else "out_of_window"
    elif not active:
        state = ""
    elif today > last:
        state = "overdue"
    elif today >= first:
        state = "due"
    else:
        state = "upcoming"
    return replace(
        entry, target=base + timedelta(days=visit.day), earliest=first, latest=last, state=state
    )


def _logs(
    study: Study, statuses: dict[tuple[str, int, str, int], str], next_repeats: dict[str, int]
) -> VisitEntry:
    forms = []
    for log in study.schedule.log_forms:
        title = study.form(log.form).title
        repeats = sorted(r for (e, _, f, r) in statuses if e == LOG_EVENT_OID and f == log.form)
        if log.repeating:
            next_repeats[log.form] = max(repeats, default=0) + 1
            forms += [
                FormEntry(
                    log.form, f"{title} #{r}", r, statuses[(LOG_EVENT_OID, 1, log.form, r)], False
                )
                for r in repeats
            ]
        else:
            status = statuses.get((LOG_EVENT_OID, 1, log.form, 1), FormStatus.NOT_STARTED)
            forms.append(FormEntry(log.form, title, 1, status, False))
    return VisitEntry(LOG_EVENT_OID, "Logs (any time)", 1, None, "", tuple(forms))


def _timing(study: Study, visit: Visit) -> str:
    if visit.anchor is None or visit.day is None:
        return "unscheduled" if visit.type == "unscheduled" else ""
    anchor = next(a for a in study.schedule.anchors if a.id == visit.anchor)
    window = ""
    if visit.window and (visit.window.earliest, visit.window.latest) != (visit.day, visit.day):
        window = f" (window {visit.window.earliest:+d} to {visit.window.latest:+d})"
    return f"day {visit.day:+d} from {_mid_sentence(anchor.label)}{window}"


def _mid_sentence(label: str) -> str:
    """`label` as it reads inside a sentence: "Informed consent signed" becomes "informed
    consent signed", but a first word that is a code or acronym ("ZM001 infusion day", "CAR-T
    infusion") keeps its capitals."""
    first = label.split(" ", 1)[0]
    if first[1:] != first[1:].lower() or any(char.isdigit() for char in first):
        return label
    return label[:1].lower() + label[1:]

"""The data manager's dashboard, counted: per site and for the study, open queries by age,
forms entered, complete, verified, signed, frozen and locked, overdue visits, subjects by status and by dose
level. Every count is an SQL aggregate grouped by site (overdue visits excepted: the casebook's
window rules, per active subject), over the sites where the user sees subjects; the study's
counts are the sum of its sites' (each subject belongs to one site).

What each number counts, and the list behind it (`app.web.dashboard_pages` links each):
- open queries: queries in `OPEN_STATES` (open, answered, resolved: someone must act, as the
  subject list counts them), by age at the site (`app.review.query_ages`);
- forms entered: stored forms with at least one value (a form marked *not done* has none);
- complete: entered forms marked complete (*Save and mark complete* needs every required
  answer, `FormStatus.COMPLETE`);
- verified: entered forms with a source data verification in force;
- signed: entered forms under a valid investigator signature, their own or their casebook's;
- frozen, locked: entered forms covered by an active freeze or lock, on the form, its visit,
  its subject or the study (`app.review.locks.covers`, in SQL); a form both frozen and
  locked counts as locked;
- overdue visits: visits of the casebook (`app.crf.casebook`) past their window undated, at
  the site's today.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import reduce
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col

from app.access import Access, Permission
from app.crf.casebook import VisitEntry, timed_visits
from app.models import (
    DataLock,
    FormData,
    FormStatus,
    ItemData,
    ItemGroupData,
    LockLevel,
    Query,
    Signature,
    Site,
    SourceVerification,
    StudyEventData,
    Subject,
    pk,
)
from app.review.query_ages import AGE_BANDS, in_band
from app.review.query_reads import OPEN_STATES
from app.site_time import local_date
from app.study.loader import Study

AnySelect = TypeVar("AnySelect", bound="Select[*tuple[Any, ...]]")
NO_DOSE_LEVEL = "none"
"""The dose-level key of subjects no dose level was assigned to (before enrolment)."""


class FormKind(StrEnum):
    """The form counts, each a list (`forms_of`)."""

    ENTERED = "entered"
    COMPLETE = "complete"
    FROZEN = "frozen"
    LOCKED = "locked"
    VERIFIED = "verified"
    SIGNED = "signed"


@dataclass(frozen=True)
class FormCounts:
    """Forms of a site or the study, one count per `FormKind` (each the length of the list
    `forms_of` gives for it): a new count is a member there, its condition in
    `KIND_CONDITIONS` and a field here of the same name."""

    entered: int = 0
    complete: int = 0
    frozen: int = 0
    locked: int = 0
    verified: int = 0
    """Entered forms with a source data verification in force (of the form, or of the items
    the SDV plan lists for it)."""
    signed: int = 0
    """Entered forms under a valid (not broken) investigator signature: their own, or their
    subject's casebook signature."""

    def __add__(self, other: FormCounts) -> FormCounts:
        return FormCounts(
            *(getattr(self, kind.value) + getattr(other, kind.value) for kind in FormKind)
        )


@dataclass(frozen=True)
class Counts:
    """What the dashboard shows of one site (`site`) or of the study (`site` None)."""

    site: Site | None
    queries_by_age: tuple[int, ...] = (0,) * len(AGE_BANDS)
    """Open queries per band of `AGE_BANDS`, in its order."""
    forms: FormCounts = field(default_factory=FormCounts)
    overdue_visits: int = 0
    by_status: Mapping[str, int] = field(default_factory=dict)
    """Subjects by status code of the study's subject path."""
    by_dose_level: Mapping[str, int] = field(default_factory=dict)
    """Subjects by assigned dose level (the planned arm), `NO_DOSE_LEVEL` if none."""

    @property
    def open_queries(self) -> int:
        return sum(self.queries_by_age)

    @property
    def subjects(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class Dashboard:
    study: Counts
    sites: tuple[Counts, ...]


def visible_sites(session: Session, access: Access) -> list[Site]:
    """The study's sites where the user sees subjects, by number."""
    shown = access.site_ids(Permission.VIEW_SUBJECTS)
    statement = select(Site).where(col(Site.study_id) == access.study_id)
    if shown is not None:
        statement = statement.where(col(Site.id).in_(shown))
    return list(session.execute(statement.order_by(col(Site.number))).scalars())


def dashboard(session: Session, study: Study, access: Access, *, now: datetime) -> Dashboard:
    """The counts of every site the user sees, and their sum."""
    sites = visible_sites(session, access)
    ids = [site.id for site in sites if site.id is not None]
    ages = _queries_by_age(session, {s.id: s.time_zone for s in sites if s.id is not None}, now)
    forms = _form_counts(session, ids)
    statuses = _subjects_by(session, ids, col(Subject.status))
    doses = _subjects_by(session, ids, func.coalesce(Subject.dose_level, NO_DOSE_LEVEL))
    overdue = Counter(
        subject.site_id for subject, _ in overdue_visits(session, study, sites, now=now)
    )
    per_site = tuple(
        Counts(
            site,
            tuple(ages.get((site.id, b.label), 0) for b in AGE_BANDS),
            forms.get(site.id, FormCounts()),
            overdue[site.id],
            statuses.get(site.id, {}),
            doses.get(site.id, {}),
        )
        for site in sites
        if site.id is not None
    )
    return Dashboard(_total(per_site), per_site)


def _total(sites: Sequence[Counts]) -> Counts:
    """The sum of the sites' counts (a count unknown at one site is unknown in the sum)."""

    def plus(total: Counts, counts: Counts) -> Counts:
        return Counts(
            None,
            tuple(a + b for a, b in zip(total.queries_by_age, counts.queries_by_age, strict=True)),
            total.forms + counts.forms,
            total.overdue_visits + counts.overdue_visits,
            dict(Counter(total.by_status) + Counter(counts.by_status)),
            dict(Counter(total.by_dose_level) + Counter(counts.by_dose_level)),
        )

    return reduce(plus, sites[1:], replace(sites[0], site=None)) if sites else Counts(None)


def _queries_by_age(
    session: Session, time_zones: Mapping[int, str], now: datetime
) -> dict[tuple[int, str], int]:
    """(site id, band label) -> open queries."""
    if not time_zones:
        return {}
    bands = case(*((in_band(time_zones, now, b), b.label) for b in AGE_BANDS), else_="")
    rows = session.execute(
        select(col(Subject.site_id), bands, func.count())
        .select_from(Query)
        .join(Subject, col(Subject.id) == Query.subject_id)
        .where(col(Subject.site_id).in_(time_zones), col(Query.state).in_(OPEN_STATES))
        .group_by(col(Subject.site_id), bands)
    )
    return {(site_id, label): n for site_id, label, n in rows}


def _covered(level: LockLevel) -> ColumnElement[bool]:
    """An active `level` lock covers the form (in a statement joined form -> visit -> subject):
    on the study, the subject, the visit or the form (`app.review.locks.covers`)."""
    return exists().where(
        col(DataLock.study_id) == Subject.study_id,
        col(DataLock.level) == level,
        col(DataLock.released_at).is_(None),
        or_(
            col(DataLock.subject_id).is_(None),
            and_(
                col(DataLock.subject_id) == Subject.id,
                or_(
                    col(DataLock.event_oid).is_(None),
                    and_(
                        col(DataLock.event_oid) == StudyEventData.event_oid,
                        col(DataLock.event_repeat) == StudyEventData.repeat_key,
                        or_(
                            col(DataLock.form_oid).is_(None),
                            and_(
                                col(DataLock.form_oid) == FormData.form_oid,
                                col(DataLock.form_repeat) == FormData.repeat_key,
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


_ENTERED = exists().where(
    col(ItemGroupData.form_data_id) == FormData.id,
    col(ItemData.item_group_data_id) == ItemGroupData.id,
    col(ItemData.value).is_not(None),
)
_LOCKED = _covered(LockLevel.LOCK)
_VERIFIED = exists().where(
    col(SourceVerification.subject_id) == Subject.id,
    col(SourceVerification.event_oid) == StudyEventData.event_oid,
    col(SourceVerification.event_repeat) == StudyEventData.repeat_key,
    col(SourceVerification.form_oid) == FormData.form_oid,
    col(SourceVerification.form_repeat) == FormData.repeat_key,
    col(SourceVerification.ended_at).is_(None),
)
_SIGNED = exists().where(
    col(Signature.subject_id) == Subject.id,
    col(Signature.broken_at).is_(None),
    or_(
        col(Signature.event_oid).is_(None),  # the casebook's signature covers every form
        and_(
            col(Signature.event_oid) == StudyEventData.event_oid,
            col(Signature.event_repeat) == StudyEventData.repeat_key,
            col(Signature.form_oid) == FormData.form_oid,
            col(Signature.form_repeat) == FormData.repeat_key,
        ),
    ),
)
KIND_CONDITIONS: Mapping[FormKind, ColumnElement[bool]] = {
    FormKind.ENTERED: _ENTERED,
    FormKind.COMPLETE: and_(_ENTERED, col(FormData.status) == FormStatus.COMPLETE),
    FormKind.FROZEN: and_(_ENTERED, _covered(LockLevel.FREEZE), ~_LOCKED),
    FormKind.LOCKED: and_(_ENTERED, _LOCKED),
    FormKind.VERIFIED: and_(_ENTERED, _VERIFIED),
    FormKind.SIGNED: and_(_ENTERED, _SIGNED),
}
"""Which forms each count counts (in a statement joined form -> visit -> subject)."""


def _joined_forms(statement: AnySelect) -> AnySelect:
    """`statement` over forms, joined to their visit and subject (as `KIND_CONDITIONS` need)."""
    return (
        statement.select_from(FormData)
        .join(StudyEventData, col(StudyEventData.id) == FormData.study_event_id)
        .join(Subject, col(Subject.id) == StudyEventData.subject_id)
    )


def _form_counts(session: Session, site_ids: list[int]) -> dict[int, FormCounts]:
    def counted(kind: FormKind) -> ColumnElement[Any]:
        return func.sum(case((KIND_CONDITIONS[kind], 1), else_=0))

    rows = session.execute(
        _joined_forms(select(col(Subject.site_id), *(counted(kind) for kind in FormKind)))
        .where(col(Subject.site_id).in_(site_ids))
        .group_by(col(Subject.site_id))
    )
    return {
        site_id: FormCounts(
            **{kind.value: int(n or 0) for kind, n in zip(FormKind, counts, strict=True)}
        )
        for site_id, *counts in rows
    }


_LIST_COLUMNS = (
    col(Subject.id), col(Subject.subject_key), col(StudyEventData.event_oid),
    col(StudyEventData.repeat_key), col(FormData.form_oid), col(FormData.repeat_key),
    col(FormData.status),
)  # fmt: skip


@dataclass(frozen=True)
class FormListRow:
    subject_id: int
    subject_key: str
    event_oid: str
    event_repeat: int
    form_oid: str
    form_repeat: int
    status: str


FORM_LIST_LIMIT = 5000
"""The most forms `forms_of` lists (the page says when it shows only the first)."""


def forms_of(
    session: Session, sites: Iterable[Site], kind: FormKind, limit: int = FORM_LIST_LIMIT
) -> list[FormListRow]:
    """The forms a count of `kind` counts at `sites` (the user's: `visible_sites`), by subject
    and visit: the list behind the dashboard's number."""
    ids = [site.id for site in sites]
    rows = session.execute(
        _joined_forms(select(*_LIST_COLUMNS))
        .where(col(Subject.site_id).in_(ids), KIND_CONDITIONS[kind])
        .order_by(
            col(Subject.subject_key),
            col(StudyEventData.id),
            col(FormData.form_oid),
            col(FormData.repeat_key),
        )
        .limit(limit)
    )
    return [FormListRow(*row) for row in rows]


def _subjects_by(
    session: Session, site_ids: list[int], key: ColumnElement[str] | Mapped[str]
) -> dict[int, dict[str, int]]:
    """Site id -> `key` (a subject column or expression) -> subjects."""
    rows = session.execute(
        select(col(Subject.site_id), key, func.count())
        .where(col(Subject.site_id).in_(site_ids))
        .group_by(col(Subject.site_id), key)
    )
    found: dict[int, dict[str, int]] = {}
    for site_id, value, n in rows:
        found.setdefault(site_id, {})[value] = n
    return found


def overdue_visits(
    session: Session, study: Study, sites: Iterable[Site], *, now: datetime
) -> list[tuple[Subject, VisitEntry]]:
    """Every overdue visit of the subjects at `sites`, by subject: the casebook's window
    states at each site's today (`app.crf.casebook.timed_visits`). Only subjects whose status
    is not final can have one (no visit is due once a subject has left), so only theirs are
    read."""
    by_id = {site.id: site for site in sites}
    final = [status.code for status in study.subject_path.statuses if status.final]
    subjects = list(
        session.execute(
            select(Subject)
            .where(col(Subject.site_id).in_(by_id), col(Subject.status).not_in(final))
            .order_by(col(Subject.subject_key))
        ).scalars()
    )
    visits = timed_visits(
        session, study, subjects, lambda subject: local_date(by_id[subject.site_id].time_zone, now)
    )
    return [
        (subject, visit)
        for subject in subjects
        for visit in visits[pk(subject)]
        if visit.state == "overdue"
    ]

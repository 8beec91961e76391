"""Where source data verification stands: per form instance (the form page, the casebook),
per site (the monitor's `/sdv` page) and per form of a casebook (`casebook_sdv`). Nothing
here writes.

A form instance the study's SDV plan asks to verify is, once complete, *due* (never
verified, or withdrawn), *verified* (all it needs is verified at a version still current)
or *dropped* (a verified value changed since: it needs verifying again). The three are
disjoint: a dropped form is not counted as due. A form not complete yet is *pending*.
Everything is computed from the stored forms, the subjects' order of registration at their
site and the verification rows, on every read: no state is kept beside them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.access import Access, Permission
from app.crf.changes import FormRef
from app.models import FormData, FormStatus, Site, SourceVerification, StudyEventData, Subject, pk
from app.review.verification import form_requirement, item_oids
from app.study.loader import Study, all_items
from app.study.sdv_plan import Requirement, requirement

InstanceKey = tuple[int, str, int, str, int]
"""(subject id, event OID, event repeat, form OID, form repeat)."""


class SdvState(StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"
    DUE = "due"
    VERIFIED = "verified"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Dropped:
    """A verification a change dropped: which items changed, by whom, when."""

    items: tuple[str, ...]
    """The labels of the items that changed."""
    by_name: str
    at: datetime


@dataclass(frozen=True)
class FormSdv:
    """A form instance's verification: its state, what the plan asks and why, the
    verifications in force and those dropped since the last verification."""

    state: SdvState
    requirement: Requirement | None = None
    verified: tuple[SourceVerification, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    item_labels: tuple[str, ...] = ()
    """The labels of the items to verify (per-item SDV); empty for the whole form."""


def sees_verification(access: Access, site_id: int) -> bool:
    """Whether the user sees where verification stands on a site's casebooks: monitors
    (who verify) and study-wide roles. Site users do not: which subjects the sample holds
    would tell them which casebooks a monitor will check."""
    return access.can(Permission.VERIFY_DATA, site_id) or (
        access.site_ids(Permission.VIEW_SUBJECTS) is None
    )


def form_state(
    study: Study, form_oid: str, needed: Requirement | None, status: str | None,
    rows: Iterable[SourceVerification],
) -> FormSdv:  # fmt: skip
    """The verification of one instance from its rows (all of them, any order)."""
    if needed is None:
        return FormSdv(SdvState.NOT_REQUIRED)
    labels = _labels(study, form_oid)
    wanted = (None,) if needed.items is None else item_oids(study, form_oid, needed.items)
    latest: dict[str | None, SourceVerification] = {}
    for row in sorted(rows, key=lambda row: row.id or 0):
        latest[row.item_oid] = row
    current = [latest[item] for item in wanted if item in latest]
    verified = tuple(row for row in current if row.ended_at is None)
    dropped = tuple(
        Dropped(
            tuple(labels.get(oid, oid) for oid in row.changed_items.split(",")),
            row.ended_by_name or "", row.ended_at,
        )
        for row in current if row.changed_items and row.ended_at is not None
    )  # fmt: skip
    if status != FormStatus.COMPLETE:
        state = SdvState.PENDING
    elif len(verified) == len(wanted):
        state = SdvState.VERIFIED
    else:
        state = SdvState.DROPPED if dropped else SdvState.DUE
    shown = () if needed.items is None else tuple(labels.get(oid, oid) for oid in wanted if oid)
    return FormSdv(state, needed, verified, dropped, shown)


def _labels(study: Study, form_oid: str) -> dict[str | None, str]:
    form = study.forms.get(form_oid)
    return {} if form is None else {item.oid: item.label for _, item in all_items(form)}


def form_sdv(
    session: Session, study: Study, subject: Subject, ref: FormRef, status: str | None
) -> FormSdv:
    """The verification of one of the subject's forms (`status` its stored status)."""
    needed = form_requirement(session, study, subject, ref.form_oid)
    if needed is None:
        return FormSdv(SdvState.NOT_REQUIRED)
    rows = session.exec(
        select(SourceVerification).where(
            SourceVerification.subject_id == subject.id,
            SourceVerification.event_oid == ref.event_oid,
            SourceVerification.event_repeat == ref.event_repeat,
            SourceVerification.form_oid == ref.form_oid,
            SourceVerification.form_repeat == ref.form_repeat,
        )
    )
    return form_state(study, ref.form_oid, needed, status, rows)


@dataclass(frozen=True)
class SdvEntry:
    """One form instance on the monitor's list."""

    subject: Subject
    site: Site
    ref: FormRef
    visit: str
    """The visit's name ("Logs" for log forms)."""
    title: str
    sdv: FormSdv


@dataclass
class SiteSdv:
    """A site's forms to verify, by state."""

    site: Site
    due: list[SdvEntry] = field(default_factory=list)
    verified: list[SdvEntry] = field(default_factory=list)
    dropped: list[SdvEntry] = field(default_factory=list)


def sdv_by_site(
    session: Session, study: Study, site_ids: set[int] | None, subject_ids: set[int] | None = None
) -> list[SiteSdv]:
    """Every complete form the SDV plan asks to verify at the sites `site_ids` (None: every
    site of the study), by site then subject and casebook order; `subject_ids` limits it
    to those subjects (a casebook)."""
    sites_query = select(Site).where(Site.study_id == study.id).order_by(col(Site.number))
    if site_ids is not None:
        sites_query = sites_query.where(col(Site.id).in_(site_ids))
    sites = {site.id: SiteSdv(site) for site in session.exec(sites_query)}
    if study.sdv is None or not sites:
        return list(sites.values())
    subjects = session.exec(
        select(Subject).where(col(Subject.site_id).in_(sites)).order_by(col(Subject.id))
    ).all()
    ranks: dict[int | None, int] = {}
    seen: dict[int, int] = {}
    for subject in subjects:
        seen[subject.site_id] = ranks[subject.id] = seen.get(subject.site_id, 0) + 1
    wanted = {s.id: s for s in subjects if subject_ids is None or s.id in subject_ids}
    rows: dict[InstanceKey, list[SourceVerification]] = {}
    for row in session.exec(
        select(SourceVerification).where(col(SourceVerification.subject_id).in_(wanted))
    ):
        key = (row.subject_id, row.event_oid, row.event_repeat, row.form_oid, row.form_repeat)
        rows.setdefault(key, []).append(row)
    forms = session.execute(
        sa_select(col(StudyEventData.subject_id), col(StudyEventData.event_oid),
                  col(StudyEventData.repeat_key), col(FormData.form_oid), col(FormData.repeat_key))
        .join(FormData, col(FormData.study_event_id) == StudyEventData.id)
        .where(col(StudyEventData.subject_id).in_(wanted), col(FormData.status) == FormStatus.COMPLETE)
        .order_by(col(StudyEventData.subject_id), col(StudyEventData.id), col(FormData.id))
    ).all()  # fmt: skip
    for subject_id, event_oid, event_repeat, form_oid, form_repeat in forms:
        subject = wanted[subject_id]
        needed = requirement(
            study.sdv, study.info.oid, subject.subject_key, ranks[subject.id], form_oid
        )
        if needed is None or form_oid not in study.forms:
            continue
        key = (subject_id, event_oid, event_repeat, form_oid, form_repeat)
        state = form_state(study, form_oid, needed, FormStatus.COMPLETE, rows.get(key, ()))
        site = sites[subject.site_id]
        visit = study.visit(event_oid)
        entry = SdvEntry(
            subject, site.site, FormRef(event_oid, event_repeat, form_oid, form_repeat),
            visit.name if visit else "Logs", study.forms[form_oid].title, state,
        )  # fmt: skip
        getattr(site, state.state.value).append(entry)
    return list(sites.values())


def casebook_sdv(
    session: Session, study: Study, subject: Subject
) -> dict[tuple[str, int, str, int], SdvState]:
    """(event OID, repeat, form OID, repeat) -> state, for each of the subject's complete
    forms the plan asks to verify (the casebook's marks)."""
    marks: dict[tuple[str, int, str, int], SdvState] = {}
    for site in sdv_by_site(session, study, {subject.site_id}, {pk(subject)}):
        for entry in (*site.due, *site.verified, *site.dropped):
            ref = entry.ref
            marks[(ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)] = (
                entry.sdv.state
            )
    return marks

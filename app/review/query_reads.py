"""Reading queries for pages, the API and CSV: per form, per subject, and the filtered list a
data manager or monitor works through. Every read is limited to the sites where the user
sees subjects."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, or_, select

from app.access import Access, Permission
from app.audit import AuditAction
from app.crf.changes import FormRef, NotFound
from app.models import AuditRecord, Query, QueryState, Site, Subject
from app.review.query_ages import age_days, at_most, older_than

OPEN_STATES = (QueryState.OPEN, QueryState.ANSWERED, QueryState.RESOLVED)
"""States of a query someone still has to act on."""
PENDING = "pending"
"""The list's state filter for any of OPEN_STATES (the open queries the dashboard counts)."""


class WhoActs(StrEnum):
    """Who must act on a query: the site on an open one, the data manager or monitor on an
    answered or resolved one."""

    SITE = "site"
    REVIEWER = "reviewer"


def who_acts(state: str) -> WhoActs | None:
    if state == QueryState.OPEN:
        return WhoActs.SITE
    if state in (QueryState.ANSWERED, QueryState.RESOLVED):
        return WhoActs.REVIEWER
    return None


@dataclass(frozen=True)
class QueryFilter:
    """What the query list shows; None: no filter."""

    site_id: int | None = None
    subject_key: str | None = None
    form_oid: str | None = None
    check_id: str | None = None
    state: str | None = None
    """A QueryState, or PENDING: any of OPEN_STATES."""
    older_than_days: int | None = None
    at_most_days: int | None = None
    """With `older_than_days`, an age band (`app.review.query_ages.AGE_BANDS`)."""
    who: WhoActs | None = None


@dataclass(frozen=True)
class QueryRow:
    query: Query
    subject_key: str
    site_number: str
    time_zone: str
    """The site's: a query's age is counted in the site's days (`app.review.query_ages`)."""

    def age_days(self, now: datetime) -> int:
        return age_days(self.time_zone, self.query.opened_at, now)


def list_queries(
    session: Session, access: Access, where: QueryFilter, *, now: datetime, limit: int = 1000
) -> list[QueryRow]:
    """Queries the user may see, matching `where`, oldest first."""
    statement = (
        select(Query, Subject.subject_key, Site.number, Site.time_zone)
        .join(Subject, col(Subject.id) == Query.subject_id)
        .join(Site, col(Site.id) == Subject.site_id)
    )
    statement = statement.where(col(Query.study_id) == access.study_id)
    sites = access.site_ids(Permission.VIEW_SUBJECTS)
    if sites is not None:
        statement = statement.where(col(Subject.site_id).in_(sites))
    if where.site_id is not None:
        statement = statement.where(col(Subject.site_id) == where.site_id)
    if where.subject_key:
        statement = statement.where(col(Subject.subject_key) == where.subject_key)
    if where.form_oid:
        statement = statement.where(col(Query.form_oid) == where.form_oid)
    if where.check_id:
        statement = statement.where(col(Query.check_id) == where.check_id)
    if where.state == PENDING:
        statement = statement.where(col(Query.state).in_(OPEN_STATES))
    elif where.state:
        statement = statement.where(col(Query.state) == where.state)
    if where.who == WhoActs.SITE:
        statement = statement.where(col(Query.state) == QueryState.OPEN)
    elif where.who == WhoActs.REVIEWER:
        statement = statement.where(
            col(Query.state).in_([QueryState.ANSWERED, QueryState.RESOLVED])
        )
    if where.older_than_days is not None or where.at_most_days is not None:
        zones = site_time_zones(session, access)
        if where.older_than_days is not None:
            statement = statement.where(older_than(zones, now, where.older_than_days))
        if where.at_most_days is not None:
            statement = statement.where(at_most(zones, now, where.at_most_days))
    rows = session.exec(statement.order_by(col(Query.opened_at), col(Query.id)).limit(limit))
    return [QueryRow(query, key, number, zone) for query, key, number, zone in rows]


def site_time_zones(session: Session, access: Access) -> dict[int, str]:
    """The time zone of every site of the access's study, by site id."""
    rows = session.exec(select(Site.id, Site.time_zone).where(Site.study_id == access.study_id))
    return {site_id: zone for site_id, zone in rows if site_id is not None}


def form_queries(session: Session, subject: Subject, ref: FormRef) -> list[Query]:
    """Every query on a form instance (on the form or its items), oldest first."""
    return list(
        session.exec(
            select(Query)
            .where(
                Query.subject_id == subject.id, Query.event_oid == ref.event_oid,
                Query.event_repeat == ref.event_repeat, Query.form_oid == ref.form_oid,
                Query.form_repeat == ref.form_repeat,
            )
            .order_by(col(Query.id))
        )
    )  # fmt: skip


def open_counts_by_form(session: Session, subject: Subject) -> Counter[tuple[str, int, str, int]]:
    """Queries someone must act on, per (event, event repeat, form, form repeat) of a subject;
    queries on a visit count under form "" and repeat 0."""
    place = (
        col(Query.event_oid),
        col(Query.event_repeat),
        col(Query.form_oid),
        col(Query.form_repeat),
    )
    rows = session.execute(
        sa_select(*place, func.count())
        .where(col(Query.subject_id) == subject.id, col(Query.state).in_(OPEN_STATES))
        .group_by(*place)
    )
    counts: Counter[tuple[str, int, str, int]] = Counter()
    for event, e_repeat, form, f_repeat, n in rows:
        counts[(event, e_repeat, form or "", f_repeat or 0)] = n
    return counts


def open_counts_by_subject(session: Session, access: Access) -> dict[int, int]:
    """Queries someone must act on, per subject the user may see."""
    statement = (
        sa_select(col(Query.subject_id), func.count())
        .join(Subject, col(Subject.id) == Query.subject_id)
        .where(col(Query.state).in_(OPEN_STATES), col(Query.study_id) == access.study_id)
        .group_by(col(Query.subject_id))
    )
    sites = access.site_ids(Permission.VIEW_SUBJECTS)
    if sites is not None:
        statement = statement.where(col(Subject.site_id).in_(sites))
    counts: dict[int, int] = {}
    for subject_id, count in session.execute(statement):
        counts[subject_id] = count
    return counts


QUERY_ACTIONS = (
    AuditAction.QUERY_OPEN, AuditAction.QUERY_ANSWER, AuditAction.QUERY_RESOLVE,
    AuditAction.QUERY_CLOSE, AuditAction.QUERY_CANCEL, AuditAction.QUERY_REOPEN,
)  # fmt: skip


def query_history(session: Session, query: Query) -> list[AuditRecord]:
    """The query's audit records, oldest first."""
    return list(
        session.exec(
            select(AuditRecord)
            .where(
                AuditRecord.subject_id == query.subject_id,
                col(AuditRecord.action).in_(QUERY_ACTIONS),
                or_(
                    col(AuditRecord.details) == f"query {query.id}",
                    col(AuditRecord.details).startswith(f"query {query.id} "),
                ),
            )
            .order_by(col(AuditRecord.id))
        )
    )


def visible_query(session: Session, access: Access, query_id: int) -> Query:
    """A query of the access's study whose subject the user may see; NotFound otherwise."""
    query = session.get(Query, query_id)
    subject = session.get(Subject, query.subject_id) if query else None
    sites = access.site_ids(Permission.VIEW_SUBJECTS)
    if (
        query is None
        or subject is None
        or query.study_id != access.study_id
        or (sites is not None and subject.site_id not in sites)
    ):
        raise NotFound(f"query {query_id}")
    return query

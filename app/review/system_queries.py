"""What edit-check results do to system queries (the consequences step of the write path,
and the batch run).

- A failing check with no query opens one on its first item (state open).
- A failing check whose query was resolved or closed re-opens that same query; one a data
  manager cancelled stays cancelled (they judged the finding not to be a problem).
- A passing check resolves its open or answered query and the system closes it, unless the
  check says `require_manual_close` or the site answered with text: then a person closes it
  (as in Oracle InForm).
A query's identity is its check and place (`check_key`), so the same finding never opens a
second query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app import audit
from app.audit import AuditAction
from app.checks.evaluate import CheckResult
from app.models import Query, QueryState, Subject, pk


@dataclass(frozen=True)
class Transition:
    """One state change of a query, as the audit trail records it."""

    action: AuditAction
    old: str | None
    new: str
    text: str | None = None
    origin: str | None = None
    """Who made it and when in the source system, for a transition an import restores."""


@dataclass
class QueryPlan:
    """A query to insert (`query.id` None) or update, the transitions it makes and, for the
    site's answer, the response it records."""

    query: Query
    transitions: list[Transition]
    response: str | None = None
    opened_at: datetime | None = None
    """When the source system opened a query an import restores (else: now)."""


def check_key(subject_id: int, result: CheckResult) -> str:
    ref = result.ref
    return "|".join(
        str(part)
        for part in (
            subject_id, result.check.id, ref.event_oid, ref.event_repeat, ref.form_oid,
            ref.form_repeat, result.group_oid, result.group_repeat, result.item_oid,
        )
    )  # fmt: skip


_QUERIES_OF_CHECKS = select(Query).where(
    col(Query.subject_id) == bindparam("subject_id"),
    col(Query.check_id).in_(bindparam("checks", expanding=True)),
)
"""Built once: every save runs it (building a statement costs more than running it)."""


def plan_system_queries(
    session: Session, study_id: int, subject_id: int, results: Iterable[CheckResult]
) -> list[QueryPlan]:
    """The queries `results` open, re-open, resolve and close (nothing is written)."""
    results = list(results)
    if not results:
        return []
    ids = {result.check.id for result in results}
    params = {"subject_id": subject_id, "checks": sorted(ids)}
    stored = {query.check_key: query for query in session.exec(_QUERIES_OF_CHECKS, params=params)}
    plans = []
    for result in results:
        key = check_key(subject_id, result)
        query = stored.get(key)
        transitions = _transitions(query, result)
        if not transitions:
            continue
        if query is None:
            ref = result.ref
            query = Query(
                study_id=study_id, subject_id=subject_id, event_oid=ref.event_oid,
                event_repeat=ref.event_repeat, form_oid=ref.form_oid, form_repeat=ref.form_repeat,
                item_group_oid=result.group_oid, group_repeat=result.group_repeat,
                item_oid=result.item_oid, check_id=result.check.id, check_key=key,
                state=QueryState.OPEN, text=result.check.message,
                require_response=result.check.require_response,
                require_manual_close=result.check.require_manual_close,
            )  # fmt: skip
        plans.append(QueryPlan(query, transitions))
    return plans


def _transitions(query: Query | None, result: CheckResult) -> list[Transition]:
    message = result.check.message
    if not result.passed:
        if query is None:
            return [Transition(AuditAction.QUERY_OPEN, None, QueryState.OPEN, message)]
        if query.state in (QueryState.RESOLVED, QueryState.CLOSED):
            return [Transition(AuditAction.QUERY_REOPEN, query.state, QueryState.OPEN, message)]
        return []
    if query is None or query.state not in (QueryState.OPEN, QueryState.ANSWERED):
        return []
    passed = "the check passes with the data as they are now"
    resolve = Transition(AuditAction.QUERY_RESOLVE, query.state, QueryState.RESOLVED, passed)
    if query.require_manual_close or query.response:
        return [resolve]
    closed = Transition(AuditAction.QUERY_CLOSE, QueryState.RESOLVED, QueryState.CLOSED, passed)
    return [resolve, closed]


def query_audit_entries(
    subject: Subject,
    plans: Iterable[QueryPlan],
    actor: audit.Actor,
    now: datetime,
    *,
    system: bool = True,
) -> list[dict[str, Any]]:
    """One audit record per transition, naming the query in `details`, by `actor` or (for
    the moves of edit checks) by the system through the channel of the change that ran the
    check; call once the queries are stored."""
    by = audit.Actor(None, actor.source) if system else actor
    entries = []
    for plan in plans:
        query = plan.query
        path = audit.DataPath(
            subject, query.event_oid, query.event_repeat, query.form_oid, query.form_repeat,
            query.item_group_oid, query.group_repeat, query.item_oid,
        )  # fmt: skip
        named = f"query {pk(query)}" + (f" {query.check_id}" if query.check_id else "")
        for transition in plan.transitions:
            origin = f" (in the source: {transition.origin})" if transition.origin else ""
            entries.append(
                audit.entry(
                    actor=by, action=transition.action, path=path, old_value=transition.old,
                    new_value=transition.new, reason=transition.text,
                    details=named + origin,
                    at=now,
                )
            )  # fmt: skip
    return entries

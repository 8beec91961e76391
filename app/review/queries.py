"""The people's side of queries: a data manager or monitor opens one on an item, a form or a
visit; the site answers; a data manager or monitor closes, cancels or re-opens. States are
CDISC ODM 2.0's QueryStateType (open, answered, resolved, closed, cancelled).

Which moves are allowed:
- answer (site): open -> answered; a system query resolved by a passing check is answered
  too (the site may still explain);
- close (data manager, monitor): answered or resolved -> closed; an open query is closed
  only with a reason (the question was wrong);
- cancel: open or answered -> cancelled (raised in error); a cancelled system query stays
  cancelled even if its check fails again;
- reopen: answered, resolved or closed -> open, with the reason the answer did not settle it.
The planning here writes nothing; `app.crf.write.apply` authorises, persists and audits.
"""

from __future__ import annotations

from sqlmodel import Session

from app.audit import AuditAction
from app.crf.changes import (
    NotFound,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
    Refused,
)
from app.models import Query, QueryState, Subject, pk
from app.review.system_queries import QueryPlan, Transition
from app.study.loader import LOG_EVENT_OID, Study

MAX_TEXT = 4000


class QueryRefused(Refused):
    """A query move that the query's state does not allow, or text missing or too long."""


class QueryConflict(Refused):
    """The query changed since the user looked at it."""


_MOVES: dict[QueryAction, tuple[frozenset[str], str, AuditAction]] = {
    QueryAction.ANSWER: (
        frozenset({QueryState.OPEN, QueryState.RESOLVED}), QueryState.ANSWERED,
        AuditAction.QUERY_ANSWER,
    ),
    QueryAction.CLOSE: (
        frozenset({QueryState.OPEN, QueryState.ANSWERED, QueryState.RESOLVED}),
        QueryState.CLOSED, AuditAction.QUERY_CLOSE,
    ),
    QueryAction.CANCEL: (
        frozenset({QueryState.OPEN, QueryState.ANSWERED}), QueryState.CANCELLED,
        AuditAction.QUERY_CANCEL,
    ),
    QueryAction.REOPEN: (
        frozenset({QueryState.ANSWERED, QueryState.RESOLVED, QueryState.CLOSED}),
        QueryState.OPEN, AuditAction.QUERY_REOPEN,
    ),
}  # fmt: skip
"""Action -> (states it leaves from, state it reaches, audit action)."""


def plan_query_open(study: Study, subject: Subject, change: QueryOpen) -> QueryPlan:
    """A new manual query on what `change.target` names; raises NotFound for a place the
    study does not have, QueryRefused for missing text."""
    target = change.target
    text = checked_text(change.text, "the question")
    check_target(study, target)
    query = Query(
        study_id=subject.study_id, subject_id=pk(subject), event_oid=target.event_oid,
        event_repeat=target.event_repeat, form_oid=target.form_oid,
        form_repeat=target.form_repeat if target.form_oid else None,
        item_group_oid=target.item_group_oid if target.item_oid else None,
        group_repeat=target.group_repeat if target.item_oid else None,
        item_oid=target.item_oid, state=QueryState.OPEN, text=text, require_response=True,
    )  # fmt: skip
    return QueryPlan(query, [Transition(AuditAction.QUERY_OPEN, None, QueryState.OPEN, text)])


def check_target(study: Study, target: QueryTarget) -> None:
    """Raise NotFound unless the study has the visit, form or item `target` names."""
    if study.visit(target.event_oid) is None and target.event_oid != LOG_EVENT_OID:
        raise NotFound(f"visit {target.event_oid}")
    if target.form_oid is not None:
        form = study.forms.get(target.form_oid)
        if form is None or target.form_oid not in study.forms_of_event(target.event_oid):
            raise NotFound(f"form {target.form_oid} at {target.event_oid}")
        if target.item_oid is not None:
            items = {item.oid: (g, item) for g in form.item_groups for item in g.items}
            found = items.get(target.item_oid)
            if found is None or found[0].oid != target.item_group_oid:
                raise NotFound(f"item {target.item_oid}")


def load_query(session: Session, subject: Subject, change: QueryChange) -> Query:
    """The subject's query `change` names, at the version the user saw."""
    query = session.get(Query, change.query_id)
    if query is None or query.subject_id != subject.id:
        raise NotFound(f"query {change.query_id}")
    if query.version != change.base_version:
        raise QueryConflict(
            f"Someone else changed this query after you opened it (it is now {query.state}). "
            "Nothing of yours was saved; look at it again."
        )
    return query


def plan_query_change(query: Query, change: QueryChange) -> QueryPlan:
    """The move `change` asks for; raises QueryRefused when the state does not allow it or
    the text it needs is missing."""
    leaves, reaches, action = _MOVES[change.action]
    if query.state not in leaves:
        raise QueryRefused(f"A query that is {query.state} cannot be {_past(change.action)}.")
    needs_text = change.action in (QueryAction.ANSWER, QueryAction.REOPEN, QueryAction.CANCEL) or (
        change.action == QueryAction.CLOSE and query.state == QueryState.OPEN
    )
    what = "an answer" if change.action == QueryAction.ANSWER else "a reason"
    text = checked_text(change.text, what) if needs_text else _optional_text(change.text)
    response = text if change.action == QueryAction.ANSWER else None
    return QueryPlan(query, [Transition(action, query.state, reaches, text)], response=response)


def _past(action: QueryAction) -> str:
    return {"answer": "answered", "close": "closed", "cancel": "cancelled", "reopen": "re-opened"}[
        action
    ]


def checked_text(text: str | None, what: str) -> str:
    """`text` stripped; QueryRefused when empty or longer than MAX_TEXT."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise QueryRefused(f"Give {what}.")
    if len(cleaned) > MAX_TEXT:
        raise QueryRefused(f"The text is {len(cleaned)} characters; at most {MAX_TEXT}.")
    return cleaned


def _optional_text(text: str | None) -> str | None:
    return checked_text(text, "text") if text and text.strip() else None

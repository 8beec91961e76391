"""Queries an ODM import restores (`ImportedQuery`): planned here, written by the write path.

- A query already in the casebook is matched, not added again: a system query on its check
  and place (`check_key`, as the check runs find it), a manual one on its place, question
  and opening time. A matched query in the file's state with the file's answer is left as
  it is (importing a file twice changes nothing).
- A matched system query in another state is moved to the file's state: the import stores
  the values first, and the check run of that save may have opened the query again (or,
  when the check passes on the imported data, opened none). The file says what the source's
  people decided about it, so its state wins; the next save that runs the check moves it on
  as usual.
- A new query gets the file's history as far as the file holds it: a transactional export
  carries every transition; a snapshot only the state, restored as the opening and one
  move to that state. Each transition is audited as the importing user, with who and when
  in the source in the record's details.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from app.audit import AuditAction
from app.crf.changes import ImportedQuery, ImportedTransition
from app.models import Query, QueryState, Subject, pk
from app.review.queries import QueryRefused, check_target, checked_text
from app.review.system_queries import QueryPlan, Transition
from app.study.loader import Study

_ACTION_REACHING = {
    QueryState.ANSWERED: AuditAction.QUERY_ANSWER,
    QueryState.RESOLVED: AuditAction.QUERY_RESOLVE,
    QueryState.CLOSED: AuditAction.QUERY_CLOSE,
    QueryState.CANCELLED: AuditAction.QUERY_CANCEL,
}


def imported_check_key(subject_id: int, change: ImportedQuery) -> str:
    """The `check_key` of a system query, as `system_queries.check_key` builds it."""
    target = change.target
    return "|".join(
        str(part)
        for part in (
            subject_id, change.check_id, target.event_oid, target.event_repeat, target.form_oid,
            target.form_repeat, target.item_group_oid, target.group_repeat, target.item_oid,
        )
    )  # fmt: skip


def matching_query(session: Session, subject: Subject, change: ImportedQuery) -> Query | None:
    """The subject's query that `change` restores, if the casebook has it already."""
    if change.check_id is not None:
        key = imported_check_key(pk(subject), change)
        return session.exec(select(Query).where(Query.check_key == key)).first()
    target = change.target
    statement = select(Query).where(
        Query.subject_id == subject.id, col(Query.check_id).is_(None),
        Query.event_oid == target.event_oid, Query.event_repeat == target.event_repeat,
        Query.form_oid == target.form_oid, Query.form_repeat == target.form_repeat,
        Query.item_group_oid == target.item_group_oid, Query.group_repeat == target.group_repeat,
        Query.item_oid == target.item_oid, Query.text == change.text,
    )  # fmt: skip
    return next(
        (query for query in session.exec(statement) if query.opened_at == change.opened_at), None
    )


def already_restored(session: Session, subject: Subject, change: ImportedQuery) -> bool:
    """Whether the casebook holds the query as the file does (state and answer): an import
    skips it before the write path, whose lock guard would refuse even a change of nothing."""
    existing = matching_query(session, subject, change)
    return existing is not None and _unchanged(existing, change)


def _unchanged(query: Query, change: ImportedQuery) -> bool:
    return query.state == change.state and query.response == change.response


def plan_imported_query(
    session: Session, study: Study, subject: Subject, change: ImportedQuery
) -> QueryPlan | None:
    """What restoring `change` writes, or None when the casebook holds it as the file does;
    raises NotFound for a place the study does not have, QueryRefused for an unknown state or
    a missing question."""
    if change.state not in set(QueryState):
        raise QueryRefused(f"{change.state!r} is not a query state")
    text = checked_text(change.text, "the question")
    check_target(study, change.target)
    existing = matching_query(session, subject, change)
    if existing is not None:
        if _unchanged(existing, change):
            return None
        if existing.check_id is None:
            raise QueryRefused(
                f"the query {text!r} is already here, {existing.state}; the file has it "
                f"{change.state} (a manual query is not moved on by an import)"
            )
        restore = _transition(existing.state, change.state, "restored from the imported file")
        return QueryPlan(existing, [restore], response=change.response)
    target = change.target
    system = change.check_id is not None
    query = Query(
        study_id=subject.study_id, subject_id=pk(subject), event_oid=target.event_oid,
        event_repeat=target.event_repeat, form_oid=target.form_oid, form_repeat=target.form_repeat,
        item_group_oid=target.item_group_oid, group_repeat=target.group_repeat,
        item_oid=target.item_oid, check_id=change.check_id,
        check_key=imported_check_key(pk(subject), change) if system else None,
        state=QueryState.OPEN, text=text, require_response=change.require_response,
        require_manual_close=change.require_manual_close,
    )  # fmt: skip
    return QueryPlan(query, _history(change, text), change.response, change.opened_at)


def _history(change: ImportedQuery, text: str) -> list[Transition]:
    """The file's transitions, starting with the opening and ending in the file's state
    (a snapshot's query, or a history cut by `changed_since`, gets the missing ends)."""
    history = list(change.history)
    if not history or history[0].old is not None:
        opened = ImportedTransition(None, QueryState.OPEN, text, change.opened_by, change.opened_at)
        history.insert(0, opened)
    transitions = [
        _transition(step.old, step.new, step.text, _origin(step.by, step.at)) for step in history
    ]
    if transitions[-1].new != change.state:
        transitions.append(
            _transition(transitions[-1].new, change.state, change.response or "as in the file")
        )
    return transitions


def _transition(
    old: str | None, new: str, text: str | None, origin: str | None = None
) -> Transition:
    if new not in set(QueryState):
        raise QueryRefused(f"{new!r} is not a query state")
    if new == QueryState.OPEN:
        action = AuditAction.QUERY_OPEN if old is None else AuditAction.QUERY_REOPEN
    else:
        action = _ACTION_REACHING[QueryState(new)]
    return Transition(action, old, new, text, origin)


def _origin(by: str | None, at: datetime | None) -> str | None:
    parts = [part for part in (by, at.isoformat(timespec="seconds") if at else None) if part]
    return ", ".join(parts) or None

"""The JSON API of queries, under the study's prefix: list (with the page's filters), read
(with its history), open, and answer / close / cancel / re-open. The same role and site rules
as the pages: every move goes through the write path."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import Field

from app import audit
from app.access import Access, Permission
from app.crf import write
from app.crf.changes import Change, QueryAction, QueryChange, QueryOpen, QueryTarget, Refused
from app.db import unit_of_work
from app.models import Query as QueryRow
from app.models import utcnow
from app.review.queries import QueryConflict
from app.review.query_reads import (
    QueryFilter,
    WhoActs,
    list_queries,
    query_history,
    visible_query,
    who_acts,
)
from app.web.api import ERRORS, STUDY_PREFIX, ApiError, Strict
from app.web.deps import SessionDep, StudyDep, requires

router = APIRouter(prefix=STUDY_PREFIX + "/queries", tags=["v1"], responses=ERRORS)
ViewerDep = Annotated[Access, requires(Permission.VIEW_SUBJECTS)]
QueryId = Annotated[int, PathParam(ge=1, le=2**62)]


class QueryEventOut(Strict):
    at: datetime
    by: str
    action: str
    old_state: str | None
    new_state: str | None
    text: str | None


class QueryOut(Strict):
    id: int
    subject_id: int
    event_oid: str
    event_repeat: int
    form_oid: str | None
    form_repeat: int | None
    item_group_oid: str | None
    group_repeat: int | None
    item_oid: str | None
    check_id: str | None = Field(description="the edit check of a system query; null: manual")
    state: str = Field(description="open, answered, resolved, closed, cancelled (ODM 2.0)")
    who_acts: str | None = Field(description="site, reviewer, or null once closed")
    text: str
    response: str | None
    opened_at: datetime
    version: int = Field(description="send it back with a move: a stale one is a 409")
    history: list[QueryEventOut] | None = None


class QueryOpenIn(Strict):
    subject_id: int = Field(ge=1)
    event_oid: str = Field(max_length=60)
    event_repeat: int = Field(default=1, ge=1, le=9999)
    form_oid: str | None = Field(default=None, max_length=60)
    form_repeat: int | None = Field(default=None, ge=1, le=9999)
    item_group_oid: str | None = Field(default=None, max_length=60)
    group_repeat: int | None = Field(default=None, ge=1, le=9999)
    item_oid: str | None = Field(default=None, max_length=60)
    text: str = Field(max_length=4000)


class QueryMoveIn(Strict):
    action: Literal["answer", "close", "cancel", "reopen"]
    version: int = Field(ge=0)
    text: str | None = Field(default=None, max_length=4000)


def _out(query: QueryRow, history: list[Any] | None = None) -> dict[str, Any]:
    values = {name: getattr(query, name) for name in QueryOut.model_fields if hasattr(query, name)}
    values["who_acts"] = who_acts(query.state)
    if history is not None:
        values["history"] = [
            {"at": r.occurred_at, "by": r.username, "action": r.action,
             "old_state": r.old_value, "new_state": r.new_value, "text": r.reason}
            for r in history
        ]  # fmt: skip
    else:
        values["history"] = None
    return values


def _apply(session: SessionDep, study: StudyDep, access: Access, change: Change) -> write.Outcome:
    try:
        with unit_of_work(session):
            return write.apply(
                session, study, change, by=write.Author(access, audit.Actor(access.user, "api")),
                now=utcnow(),
            )  # fmt: skip
    except QueryConflict as conflict:
        raise ApiError(409, str(conflict)) from conflict
    except Refused as refusal:
        raise ApiError(422, str(refusal)) from refusal


@router.get("", response_model=list[QueryOut])
def queries(
    session: SessionDep,
    access: ViewerDep,
    subject_key: Annotated[str | None, Query(max_length=40)] = None,
    form_oid: Annotated[str | None, Query(max_length=60)] = None,
    check_id: Annotated[str | None, Query(max_length=40)] = None,
    state: Annotated[str | None, Query(max_length=20)] = None,
    who: WhoActs | None = None,
    older_than_days: Annotated[int | None, Query(ge=0, le=100000)] = None,
) -> list[dict[str, Any]]:
    """The queries of the subjects you may see, oldest first (at most 1000)."""
    where = QueryFilter(
        subject_key=subject_key, form_oid=form_oid, check_id=check_id, state=state,
        older_than_days=older_than_days, who=who,
    )  # fmt: skip
    return [_out(row.query) for row in list_queries(session, access, where, now=utcnow())]


@router.get("/{query_id}", response_model=QueryOut)
def read_query(session: SessionDep, access: ViewerDep, query_id: QueryId) -> dict[str, Any]:
    """One query with its history (who moved it when, from which state to which, and why)."""
    query = visible_query(session, access, query_id)
    return _out(query, query_history(session, query))


@router.post(
    "", response_model=QueryOut, status_code=201,
    dependencies=[requires(Permission.MANAGE_QUERIES)],
)  # fmt: skip
def open_query(
    session: SessionDep, study: StudyDep, access: ViewerDep, body: QueryOpenIn
) -> dict[str, Any]:
    """Raise a manual query on an item (all of its path given), a form or a visit."""
    target = QueryTarget(
        body.event_oid, body.event_repeat, body.form_oid, body.form_repeat, body.item_group_oid,
        body.group_repeat, body.item_oid,
    )  # fmt: skip
    outcome = _apply(session, study, access, QueryOpen(body.subject_id, target, body.text))
    query = outcome.plan.queries[0].query
    return _out(query, query_history(session, query))


@router.post(
    "/{query_id}", response_model=QueryOut, dependencies=[requires(Permission.VIEW_SUBJECTS)]
)
def move_query(
    session: SessionDep, study: StudyDep, access: ViewerDep, query_id: QueryId, body: QueryMoveIn
) -> dict[str, Any]:
    """Answer (site), close, cancel or re-open (data manager, monitor) a query; 409 when
    `version` is stale, 422 when its state does not allow the move or text is missing."""
    query = visible_query(session, access, query_id)
    change = QueryChange(
        query.subject_id, query_id, body.version, QueryAction(body.action), body.text
    )
    _apply(session, study, access, change)
    session.refresh(query)
    return _out(query, query_history(session, query))

"""Query pages: the list a data manager, monitor or site works through (filters, several
queries answered, closed or cancelled in one action, CSV), and the moves posted from a form's
query panel. Every move goes through the write path (`app.crf.write.apply`), which checks the
permission the move needs at the subject's site."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import select

from app import audit
from app.access import Access, Permission
from app.crf import reads, write
from app.crf.changes import QueryAction, QueryChange, QueryOpen, QueryTarget, Refused
from app.db import unit_of_work
from app.models import Site, utcnow
from app.review import query_ages
from app.review.query_reads import (
    PENDING,
    QueryFilter,
    QueryRow,
    WhoActs,
    list_queries,
    visible_query,
    who_acts,
)
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ViewerDep = Annotated[Access, requires(Permission.VIEW_SUBJECTS)]
SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
QueryId = Annotated[int, PathParam(ge=1, le=2**62)]
Text = Annotated[str, Form(max_length=4000)]


def local_path(path: str, fallback: str) -> str:
    """A path on this server to return to (never another site: no scheme, no //host)."""
    return path if path.startswith("/") and not path.startswith("//") else fallback


def _author(access: Access) -> write.Author:
    return write.Author(access, audit.Actor(access.user))


def _message(request: Request, access: Access, title: str, text: str, status: int) -> Response:
    return render(
        request, "message.html", {"title": title, "message": text, "access": access}, status
    )


@router.post("/subjects/{subject_id}/queries", dependencies=[requires(Permission.MANAGE_QUERIES)])
def raise_query(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    event_oid: Annotated[str, Form(max_length=60)],
    text: Text,
    event_repeat: Annotated[int, Form(ge=1, le=9999)] = 1,
    form_oid: Annotated[str, Form(max_length=60)] = "",
    form_repeat: Annotated[int, Form(ge=1, le=9999)] = 1,
    item: Annotated[str, Form(max_length=130)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Open a manual query on a form, one of its items (`item` = "group OID:item OID") or a
    visit (no form)."""
    group_oid, _, item_oid = item.partition(":")
    target = QueryTarget(
        event_oid, event_repeat, form_oid or None, form_repeat if form_oid else None,
        group_oid or None, 1 if item_oid else None, item_oid or None,
    )  # fmt: skip
    try:
        with unit_of_work(session):
            write.apply(
                session,
                study,
                QueryOpen(subject_id, target, text),
                by=_author(access),
                now=utcnow(),
            )
    except Refused as refused:
        return _message(request, access, "Query not raised", str(refused), 422)
    return RedirectResponse(local_path(next, f"/subjects/{subject_id}") + "#queries-title", 303)


@router.post(
    "/subjects/{subject_id}/queries/{query_id}", dependencies=[requires(Permission.VIEW_SUBJECTS)]
)
def move_query(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    query_id: QueryId,
    action: Annotated[str, Form(max_length=20)] = "",
    version: Annotated[int, Form(ge=0, le=2**31)] = 0,
    text: Text = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Answer (site), close, cancel or re-open (data manager, monitor) one query. The subject
    is looked up first: another site's subject is Not found, whatever was posted."""
    reads.get_subject(session, access, subject_id)
    if action not in {a.value for a in QueryAction}:
        return _message(request, access, "Query not changed", "Choose what to do with it.", 422)
    change = QueryChange(subject_id, query_id, version, QueryAction(action), text or None)
    try:
        with unit_of_work(session):
            write.apply(session, study, change, by=_author(access), now=utcnow())
    except Refused as refused:
        return _message(request, access, "Query not changed", str(refused), 409)
    return RedirectResponse(local_path(next, f"/subjects/{subject_id}") + f"#query-{query_id}", 303)


FilterParam = Annotated[str | None, Query(max_length=60)]


@dataclass(frozen=True)
class ListFilter:
    """The query list's filters as the page's form sent them, and as the reads take them."""

    shown: dict[str, str | None]
    where: QueryFilter


def list_filter(
    session: SessionDep,
    study: StudyDep,
    site: FilterParam = None,
    subject: FilterParam = None,
    form: FilterParam = None,
    check: FilterParam = None,
    state: FilterParam = None,
    age: FilterParam = None,
    band: FilterParam = None,
    who: FilterParam = None,
) -> ListFilter:
    """The filters of `/queries` and `/queries.csv` (an unknown site matches nothing): `age`
    a band's label, for queries older than the band's youngest; `band` a band's label, for
    queries in it (the dashboard's links)."""
    site_id = None
    if site:
        found = session.exec(
            select(Site).where(Site.study_id == study.id, Site.number == site)
        ).first()
        site_id = found.id if found else -1
    older_band, in_band = query_ages.band(age), query_ages.band(band)
    lows = [b.low - 1 for b in (older_band, in_band) if b is not None and b.low > 0]
    where = QueryFilter(
        site_id=site_id, subject_key=subject or None, form_oid=form or None,
        check_id=check or None, state=state or None,
        older_than_days=max(lows) if lows else None,
        at_most_days=in_band.high if in_band else None,
        who=WhoActs(who) if who in {w.value for w in WhoActs} else None,
    )  # fmt: skip
    shown = {"site": site, "subject": subject, "form": form, "check": check, "state": state,
             "age": age, "band": band, "who": who}  # fmt: skip
    return ListFilter(shown, where)


ListFilterDep = Annotated[ListFilter, Depends(list_filter)]


@router.get("/queries")
def query_list(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    filters: ListFilterDep,
) -> Response:
    where = filters.where
    now = utcnow()
    rows = list_queries(session, access, where, now=now)
    context = {
        "access": access, "rows": rows, "now": now, "who_acts": who_acts,
        "filters": filters.shown,
        "forms": sorted(study.forms.values(), key=lambda f: f.title),
        "checks": sorted({c.id for c in study.checks}),
        "sites": session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.number)).all(),
        "ages": [(b.label, f"more than {b.low - 1} days") for b in query_ages.AGE_BANDS[1:]],
        "bands": [b.label for b in query_ages.AGE_BANDS], "pending": PENDING,
        "can_manage": access.can(Permission.MANAGE_QUERIES),
        "can_answer": access.can(Permission.ANSWER_QUERIES),
        "query_string": request.url.query,
        "done": request.query_params.get("done"),
    }  # fmt: skip
    return render(request, "queries.html", context)


@router.get("/queries.csv")
def query_csv(
    study: StudyDep, access: ViewerDep, session: SessionDep, filters: ListFilterDep
) -> Response:
    """The list as filtered, as CSV (UTF-8, one query per row)."""
    now = utcnow()
    rows = list_queries(session, access, filters.where, now=now)
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(
        ["query", "site", "subject", "event", "event_repeat", "form", "form_repeat", "item",
         "row", "check", "state", "who_acts", "opened_at_utc", "age_days", "text", "response"]
    )  # fmt: skip
    for row in rows:
        out.writerow(_csv_row(row, now))
    return Response(
        buffer.getvalue(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{study.info.oid}-queries.csv"'},
    )  # fmt: skip


def _csv_row(row: QueryRow, now: datetime) -> list[object]:
    q = row.query
    return [
        q.id, row.site_number, row.subject_key, q.event_oid, q.event_repeat, q.form_oid or "",
        q.form_repeat or "", q.item_oid or "", q.group_repeat or "", q.check_id or "", q.state,
        who_acts(q.state) or "", q.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        row.age_days(now),
        q.text, q.response or "",
    ]  # fmt: skip


@router.post("/queries/bulk", dependencies=[requires(Permission.VIEW_SUBJECTS)])
async def bulk_action(
    request: Request, session: SessionDep, study: StudyDep, access: ViewerDep
) -> Response:
    """Answer, close or cancel the selected queries with one text; all of them or none (one
    refused move refuses the action, saying which query and why)."""
    data = await request.form(max_fields=2000)
    try:
        action = QueryAction(str(data.get("action")))
        selected = [int(str(value)) for value in data.getlist("query")]
    except ValueError:
        return _message(request, access, "Nothing changed", "Choose queries and an action.", 422)
    text = str(data.get("text") or "").strip() or None
    back = local_path(str(data.get("next") or ""), "/queries")
    if not selected:
        return _message(request, access, "Nothing changed", "Choose at least one query.", 422)
    try:
        with unit_of_work(session):
            for query_id in selected:
                query = visible_query(session, access, query_id)
                change = QueryChange(query.subject_id, query_id, query.version, action, text)
                try:
                    write.apply(session, study, change, by=_author(access), now=utcnow())
                except Refused as refused:
                    raise Refused(f"Query {query_id}: {refused}") from refused
    except Refused as refused:
        return _message(request, access, "Nothing changed", str(refused), 409)
    separator = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{separator}done={len(selected)}", status_code=303)

"""The dose escalation's pages: `/escalation` (the state and its reason, each level with its
subjects by pseudonym, the board's decisions, the next cohort's possible outcomes, the chart,
the design's operating characteristics, and the sponsor's form to record a board decision),
`POST /escalation/decisions` (sign and record it, `app.escalation.decisions`), and
`/escalation/report` (one printable page for the board's meeting).

The day is the latest date at any of the study's sites, as a decision's date is checked.
A wrong password is audited and counted toward the lockout in a transaction of its own (the
refused decision rolls back); any other refusal stores nothing and shows the page again with
its message and the fields as typed."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from app.access import Access, Permission
from app.db import unit_of_work
from app.escalation.decisions import (
    DEFAULT_MEANING,
    KIND_LABELS,
    DecisionRefused,
    DecisionRequest,
    DecisionWrongPassword,
    record_decision,
    record_failed_decision,
    study_today,
)
from app.escalation.gates import DecisionKind
from app.escalation.study_state import study_escalation
from app.models import utcnow
from app.study.loader import Study
from app.web.deps import CallerDep, SessionDep, StudyDep, requires
from app.web.escalation_context import DEFAULT_RATES, characteristics_context, escalation_context
from app.web.pages import NOT_FOUND, render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ViewerDep = Annotated[Access, requires(Permission.VIEW_ESCALATION)]
RecorderDep = Annotated[Access, requires(Permission.RECORD_BOARD_DECISION)]
Text = Annotated[str, Form(max_length=2000)]


def _page(
    request: Request,
    session: Session,
    study: Study,
    access: Access,
    *,
    rates: str = DEFAULT_RATES,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    if study.escalation is None or study.escalation.casebook is None:
        context = {"title": "Not found", "message": NOT_FOUND, "access": access}
        return render(request, "message.html", context, 404)
    today = study_today(session, study, utcnow())
    state = study_escalation(session, study, today)
    form = form or {"kind": "", "levels": [], "decided_on": today.isoformat(),
                    "meaning": DEFAULT_MEANING}  # fmt: skip
    context = {
        "access": access, **escalation_context(state, access),
        **characteristics_context(study, rates),
        "can_record": access.can(Permission.RECORD_BOARD_DECISION),
        "kinds": KIND_LABELS, "form": form, "form_error": error,
    }  # fmt: skip
    return render(request, "escalation.html", context, status)


@router.get("/escalation")
def escalation_page(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    rates: Annotated[str, Query(max_length=200)] = DEFAULT_RATES,
) -> Response:
    return _page(request, session, study, access, rates=rates)


@router.post("/escalation/decisions")
def record_board_decision(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: RecorderDep,
    caller: CallerDep,
    kind: Annotated[str, Form(max_length=20)] = "",
    levels: Annotated[list[str] | None, Form(max_length=20)] = None,
    decided_on: Annotated[str, Form(max_length=10)] = "",
    rationale: Text = "",
    minutes_reference: Annotated[str, Form(max_length=200)] = "",
    override_reason: Text = "",
    meaning: Text = DEFAULT_MEANING,
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign and record the board's decision; back to the page with it in the history."""
    form = {"kind": kind, "levels": levels or [], "decided_on": decided_on,
            "rationale": rationale, "minutes_reference": minutes_reference,
            "override_reason": override_reason, "meaning": meaning}  # fmt: skip

    def refused(message: str) -> Response:
        return _page(request, session, study, access, form=form, error=message, status=422)

    if caller.login_session is None:
        return refused("A signature needs your password: record the decision on the page.")
    try:
        request_ = DecisionRequest(
            DecisionKind(kind), tuple(levels or ()), date.fromisoformat(decided_on), rationale,
            password, meaning, minutes_reference or None, override_reason or None,
        )  # fmt: skip
    except ValueError:
        return refused("Choose the decision and give its date (YYYY-MM-DD).")
    now = utcnow()
    try:
        with unit_of_work(session):
            record_decision(session, study, access, request_, source="web", now=now)
    except DecisionWrongPassword as wrong:
        with unit_of_work(session):
            record_failed_decision(session, study, wrong, "web", now)
        return refused(str(wrong))
    except DecisionRefused as refusal:
        return refused(str(refusal))
    return RedirectResponse("/escalation#decision-history", status_code=303)


@router.get("/escalation/report")
def board_report(
    request: Request, session: SessionDep, study: StudyDep, access: ViewerDep
) -> Response:
    """One printable page for the board: the state, counts, DLTs, the subjects in their
    window, the recommendation, the last decision and a block to sign the next."""
    if study.escalation is None or study.escalation.casebook is None:
        context = {"title": "Not found", "message": NOT_FOUND, "access": access}
        return render(request, "message.html", context, 404)
    today = study_today(session, study, utcnow())
    state = study_escalation(session, study, today)
    context = {"access": access, **escalation_context(state, access)}
    return render(request, "escalation_report.html", context)

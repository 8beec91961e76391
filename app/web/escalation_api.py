"""The escalation as JSON, under the study's prefix: `GET .../escalation` answers the state as
the board's decisions shape it, the rules' recommendation, each level's counts and status
(the shape of `trialdesk escalation simulate --json`), the subjects by pseudonym with their
DLT windows, and the board's decisions with their signatures. For the sponsor's statistician
and the board's tools; the same permission as the page, never a screening number."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter

from app.access import Access, Permission
from app.escalation.decisions import study_today
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import EscalationSubject, study_escalation
from app.models import utcnow
from app.web.api import ERRORS, STUDY_PREFIX, ApiError, Strict
from app.web.deps import SessionDep, StudyDep, requires

router = APIRouter(prefix=STUDY_PREFIX + "/escalation", tags=["v1"], responses=ERRORS)
ViewerDep = Annotated[Access, requires(Permission.VIEW_ESCALATION)]


class DecisionOut(Strict):
    state: str
    level: str | None
    reason: str


class LevelOut(Strict):
    status: str
    infused: int
    evaluable: int
    dlt: int
    pending: int
    not_evaluable: int


class SubjectOut(Strict):
    pseudonym: str
    level: str
    expansion: bool
    infused_on: date | None
    outcome: str
    window_end: date | None
    days_remaining: int | None


class BoardDecisionOut(Strict):
    kind: str
    levels: list[str]
    decided_on: date
    rationale: str
    override_reason: str | None
    rules_then: DecisionOut
    signed_by: str
    signed_at: datetime
    meaning: str


class EscalationOut(Strict):
    today: date
    decision: DecisionOut
    recommendation: DecisionOut
    levels: dict[str, LevelOut]
    subjects: list[SubjectOut]
    board_decisions: list[BoardDecisionOut]


@router.get("", summary="The dose escalation today")
def escalation(session: SessionDep, study: StudyDep, access: ViewerDep) -> EscalationOut:
    if study.escalation is None or study.escalation.casebook is None:
        raise ApiError(404, "This study runs no dose escalation from its casebooks.")
    today = study_today(session, study, utcnow())
    state = study_escalation(session, study, today)
    return EscalationOut(
        today=today,
        decision=DecisionOut(**vars(state.decision)),
        recommendation=DecisionOut(**vars(state.recommendation)),
        levels={
            level: LevelOut.model_validate(counts.as_json())
            for level, counts in state.engine.counts.items()
        },
        subjects=[_subject(s, today) for s in state.subjects],
        board_decisions=[_board_decision(d) for d in state.decisions],
    )


def _subject(entry: EscalationSubject, today: date) -> SubjectOut:
    return SubjectOut(
        pseudonym=entry.pseudonym, level=entry.level, expansion=entry.expansion,
        infused_on=entry.facts.infused_on, outcome=entry.outcome.name,
        window_end=entry.window_end, days_remaining=entry.days_remaining(today),
    )  # fmt: skip


def _board_decision(record: BoardDecisionRecord) -> BoardDecisionOut:
    rules_then = DecisionOut(
        state=record.engine_state, level=record.engine_level, reason=record.engine_reason
    )
    return BoardDecisionOut(
        kind=record.kind, levels=list(record.level_codes), decided_on=record.decided_on,
        rationale=record.rationale, override_reason=record.override_reason,
        rules_then=rules_then, signed_by=record.signer_name, signed_at=record.signed_at,
        meaning=record.meaning,
    )  # fmt: skip

"""Recording the safety board's decisions (build spec §2.4, §5.22; EC060): checked against
what the rules allow, signed with the recorder's password (21 CFR Part 11: printed name, time,
meaning), audited, never changed afterwards.

- A decision the rules do not support (escalating while the rules say expand, declaring an MTD
  the rules have not reached) is refused unless the user gives a reason to override them,
  which is stored and signed with it (EC060). Pausing and stopping are always the board's to
  decide.
- What the rules forbid outright is refused, override or not: a selection of an exceeded
  level, a level above the MTD, or more levels than the study expands (spec rows 24, 25);
  resuming when nothing is paused.
- The log is chronological: a decision is dated on or after the last one, and not after
  today anywhere the study has a site.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlmodel import Session, col

from app import audit, auth
from app.access import Access, Permission
from app.audit import AuditAction
from app.crf.changes import Refused
from app.escalation.board import selection_refusal
from app.escalation.engine import LevelStatus, State
from app.escalation.gates import DecisionKind
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import StudyEscalation, study_escalation
from app.escalation.write_gates import serialise_escalation
from app.models import Site, UserAccount, pk
from app.site_time import local_date
from app.study.loader import Study

DEFAULT_MEANING = "I record this decision of the safety board as taken, with its rationale."

KIND_LABELS: dict[DecisionKind, str] = {
    DecisionKind.ESCALATE: "Escalate to the next level",
    DecisionKind.EXPAND: "Expand the level's cohort",
    DecisionKind.DEESCALATE: "De-escalate",
    DecisionKind.DECLARE_MTD: "Declare the MTD (or the top dose tolerated)",
    DecisionKind.SELECT: "Select the expansion levels",
    DecisionKind.PAUSE: "Pause infusions",
    DecisionKind.RESUME: "Resume infusions",
    DecisionKind.STOP: "Stop enrolment",
}
_ONE_LEVEL = frozenset(
    {DecisionKind.ESCALATE, DecisionKind.EXPAND, DecisionKind.DEESCALATE, DecisionKind.DECLARE_MTD}
)
_NO_LEVEL = frozenset({DecisionKind.PAUSE, DecisionKind.RESUME, DecisionKind.STOP})


class DecisionRefused(Refused):
    """A board decision that cannot be recorded as asked; the message says why."""


class DecisionWrongPassword(DecisionRefused):
    """The password is wrong: the caller records the failure in a transaction of its own
    (`record_failed_decision`), since the refused decision rolls back."""

    def __init__(self, user_id: int) -> None:
        super().__init__("The password is wrong. Nothing was recorded or signed.")
        self.user_id = user_id


@dataclass(frozen=True)
class DecisionRequest:
    kind: DecisionKind
    levels: tuple[str, ...]
    decided_on: date
    rationale: str
    password: str
    meaning: str = DEFAULT_MEANING
    minutes_reference: str | None = None
    override_reason: str | None = None


def contradiction(state: StudyEscalation, kind: DecisionKind, levels: Sequence[str]) -> str | None:
    """Why the rules do not support `kind` at `levels` now (EC060); None when they do."""
    engine = state.recommendation
    level = levels[0] if levels else None
    status = state.engine.counts[level].status if level in state.engine.counts else None
    rules_say = f"They say {engine.state}" + (f" at {engine.level}" if engine.level else "")
    match kind:
        case DecisionKind.ESCALATE:
            opened = [d for d in state.decisions if d.kind == kind and level in d.level_codes]
            if opened:
                return f"The board already opened {level} on {opened[0].decided_on} (EC060)."
            supported = (
                engine.state == State.ESCALATING and engine.level == level
                and status == LevelStatus.OPEN_A and level != state.engine.levels[0]
            )  # fmt: skip
        case DecisionKind.EXPAND:
            supported = status == LevelStatus.OPEN_B
        case DecisionKind.DEESCALATE:
            supported = engine.state == State.DEESCALATING and engine.level == level
        case DecisionKind.DECLARE_MTD:
            supported = (
                engine.state in (State.MTD_DECLARED, State.TOP_DOSE_TOLERATED)
                and engine.level == level
            )
        case _:
            supported = True
    if supported:
        return None
    what = KIND_LABELS[kind].lower() + (f" ({level})" if level else "")
    return f"The rules do not support this decision ({what}; EC060). {rules_say}: {engine.reason}"


def refusal(state: StudyEscalation, kind: DecisionKind, levels: Sequence[str]) -> str | None:
    """What the rules forbid whatever the board's reason (module docstring)."""
    known = state.engine.levels
    unknown = [level for level in levels if level not in known]
    if unknown:
        return f"{', '.join(unknown)} is not a dose level of the study ({', '.join(known)})."
    if kind in _ONE_LEVEL and len(levels) != 1:
        return f"Name one dose level for this decision, not {len(levels)}."
    if kind in _NO_LEVEL and levels:
        return "This decision concerns every level: name none."
    if kind == DecisionKind.SELECT:
        return selection_refusal(state.engine, levels)
    if kind == DecisionKind.RESUME:
        pause = state.latest(DecisionKind.PAUSE, DecisionKind.RESUME)
        if pause is None or pause.kind != DecisionKind.PAUSE:
            return "Infusions are not paused by the board: there is nothing to resume."
    if state.latest(DecisionKind.STOP) is not None:
        return "The board has stopped enrolment: no later decision is recorded."
    return None


def record_decision(
    session: Session,
    study: Study,
    access: Access,
    request: DecisionRequest,
    *,
    source: str,
    now: datetime,
) -> BoardDecisionRecord:
    """Check, sign and store the decision, and audit it (the caller commits). Raises
    AccessDenied, DecisionRefused (the message names the rule), or DecisionWrongPassword."""
    access.require(Permission.RECORD_BOARD_DECISION)
    user = access.user
    if not request.rationale.strip():
        raise DecisionRefused("Give the board's rationale for the decision.")
    if not request.meaning.strip():
        raise DecisionRefused("Give the meaning of your signature.")
    serialise_escalation(session, study)
    _check_date(session, study, request.decided_on, now)
    state = study_escalation(session, study, request.decided_on)
    refused = refusal(state, request.kind, request.levels)
    if refused:
        raise DecisionRefused(refused)
    contradicts = contradiction(state, request.kind, request.levels)
    override = (request.override_reason or "").strip() or None
    if contradicts and override is None:
        raise DecisionRefused(
            f"{contradicts} To record it anyway, give the reason for overriding the rules; "
            "it is signed with the decision."
        )
    if auth.is_locked(user, now):
        raise DecisionRefused("This account is locked after repeated wrong passwords; try later.")
    if not auth.verify_password(user, request.password):
        raise DecisionWrongPassword(pk(user))
    recommendation = state.recommendation
    record = BoardDecisionRecord(
        study_id=study.id, kind=request.kind, levels=",".join(request.levels),
        decided_on=request.decided_on, rationale=request.rationale.strip(),
        minutes_reference=(request.minutes_reference or "").strip() or None,
        override=contradicts is not None, override_reason=override if contradicts else None,
        engine_state=recommendation.state, engine_level=recommendation.level,
        engine_reason=recommendation.reason,
        counts={level: counts.as_json() for level, counts in state.engine.counts.items()},
        signer_id=pk(user), signer_name=user.full_name, meaning=request.meaning.strip(),
        signed_at=now,
    )  # fmt: skip
    session.add(record)
    session.flush()
    audit.record(
        session, actor=audit.Actor(user, source), action=AuditAction.BOARD_DECISION,
        study_id=study.id, new_value=describe(record), reason=record.rationale,
        details=f"signed: {record.meaning}" + (" (overriding the rules)" if record.override else ""),
        at=now,
    )  # fmt: skip
    return record


def record_failed_decision(
    session: Session, study: Study, refused: DecisionWrongPassword, source: str, now: datetime
) -> None:
    """Audit a signing refused for a wrong password and count it toward the lockout (the
    caller commits, in a transaction of its own)."""
    user = session.get(UserAccount, refused.user_id)
    assert user is not None
    details = auth.count_failure(session, user, now)
    audit.record(
        session, actor=audit.Actor(user, source), action=AuditAction.SIGN_FAILED,
        study_id=study.id, details=f"{details}; signing a board decision", at=now,
    )  # fmt: skip


def describe(record: BoardDecisionRecord) -> str:
    """The decision in a line: what, at which levels, on what date."""
    levels = f" {' and '.join(record.level_codes)}" if record.levels else ""
    return f"{KIND_LABELS[DecisionKind(record.kind)]}{levels}, {record.decided_on.isoformat()}"


def study_today(session: Session, study: Study, now: datetime) -> date:
    """The latest date at `now` anywhere the study has a site (UTC's without sites)."""
    zones = session.execute(select(col(Site.time_zone)).where(col(Site.study_id) == study.id))
    return max((local_date(zone, now) for zone in zones.scalars()), default=now.date())


def _check_date(session: Session, study: Study, decided_on: date, now: datetime) -> None:
    latest_today = study_today(session, study, now)
    if decided_on > latest_today:
        raise DecisionRefused(
            f"The decision date {decided_on.isoformat()} is in the future (today is "
            f"{latest_today.isoformat()} at the study's sites)."
        )
    last = session.execute(
        select(col(BoardDecisionRecord.decided_on))
        .where(col(BoardDecisionRecord.study_id) == study.id)
        .order_by(col(BoardDecisionRecord.decided_on).desc())
        .limit(1)
    ).scalar()
    if last is not None and decided_on < last:
        raise DecisionRefused(
            f"The board's log is in date order: the last decision is dated {last.isoformat()}, "
            f"so this one cannot be dated {decided_on.isoformat()}."
        )

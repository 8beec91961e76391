"""Whether an infusion may be given at a dose level on a date (build spec §2.4, edit checks
EC030-EC032), pure: from the engine's state, the board's decisions and the level's earlier
infusions. Each refusal names the rule.

- The cap of infused subjects closes enrolment; a stopped study infuses no one; a pause for
  a late DLT stops infusions above the paused level.
- Only an open level infuses (EC032), and only while its cohort has room: the first cohort,
  or the rest of the full cohort once expanded (a subject not evaluable frees a place).
- A level other than the lowest is opened by a board decision, and no infusion there is
  dated before it (EC030).
- The first subject of a newly opened level is a sentinel: the second is infused only
  `stagger_days` after it (EC031).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from app.escalation.engine import Escalation, LevelStatus, State


class DecisionKind(StrEnum):
    """What the safety board decides."""

    ESCALATE = "escalate"
    EXPAND = "expand"
    DEESCALATE = "deescalate"
    DECLARE_MTD = "declare_mtd"
    SELECT = "select"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


OPENING = frozenset({DecisionKind.ESCALATE, DecisionKind.EXPAND, DecisionKind.DEESCALATE})
"""Decisions that open the escalation levels they name (a selection opens the expansion's)."""


@dataclass(frozen=True)
class BoardDecision:
    kind: DecisionKind
    levels: tuple[str, ...]
    decided_on: date


def opened_on(decisions: Sequence[BoardDecision], level: str) -> date | None:
    """The date of the first board decision that opened `level`, if any."""
    dates = [d.decided_on for d in decisions if d.kind in OPENING and level in d.levels]
    return min(dates) if dates else None


def infusion_refusal(
    escalation: Escalation,
    decisions: Sequence[BoardDecision],
    level: str,
    on: date,
    earlier: Sequence[date],
    *,
    also_infused: int = 0,
    forced: bool = False,
) -> str | None:
    """Why an infusion at `level` on `on` is refused (None: it may go ahead); `earlier` are
    the dates of the level's infusions so far, `also_infused` the subjects infused outside
    the escalation (in the expansion), who count toward the cap. `forced`: the board opened
    the level against the rules (EC060, with its signed reason); only exceeding it closes it."""
    rules, decision = escalation.rules, escalation.current()
    if escalation.infused + also_infused >= rules.max_infused:
        return (
            f"The study has infused its cap of {rules.max_infused} subjects: enrolment is closed."
        )
    if decision.state == State.STOPPED_NO_TOLERABLE_DOSE:
        return f"The escalation has stopped: {decision.reason}"
    levels = escalation.levels
    if (
        decision.state == State.PAUSED_REVIEW
        and decision.level is not None
        and levels.index(level) > levels.index(decision.level)
    ):
        return f"Infusions above {decision.level} are paused: {decision.reason}"
    counts = escalation.counts[level]
    open_now = counts.status in (LevelStatus.OPEN_A, LevelStatus.OPEN_B)
    if not open_now and not (forced and counts.status != LevelStatus.EXCEEDED):
        return f"{level} is not open for infusion (it is {counts.status}; EC032)."
    if level != levels[0]:
        opened = opened_on(decisions, level)
        if opened is None:
            return f"No board decision has opened {level} yet (EC030)."
        if on < opened:
            return (
                f"{level} was opened by the board on {opened.isoformat()}; an infusion on "
                f"{on.isoformat()} is before that decision (EC030)."
            )
    if escalation.room(level) <= 0:
        return (
            f"{level}'s cohort of {escalation.cohort(level)} is full ({counts.evaluable} "
            f"evaluable, {counts.pending} in their window): wait for their outcomes (EC032)."
        )
    if counts.status == LevelStatus.OPEN_A and len(earlier) == 1:
        allowed = earlier[0] + timedelta(days=rules.stagger_days)
        if on < allowed:
            return (
                f"The first subject at {level} was infused on {earlier[0].isoformat()}; the next "
                f"may be infused from {allowed.isoformat()}, {rules.stagger_days} days after "
                "(EC031)."
            )
    return None

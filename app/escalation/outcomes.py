"""A subject's escalation outcome from what the sites entered (build spec §2.3), pure: today
is passed in.

- Never infused (leukapheresed only): not counted, replaced.
- A delivered dose outside the tolerance of the target: not DLT-evaluable, replaced (the
  subject stays in the safety population).
- A DLT with onset from the infusion day (day 0) to the last day of the window, inclusive:
  a DLT, counted once however many events qualify, even if the subject withdrew or died later.
- The window completed (today after its last day) without DLT: evaluable without DLT.
- Withdrawn, lost or dead before the window's last day without DLT, or judged not
  evaluable by the DLT assessment: not evaluable, replaced.
- Otherwise: in the window (pending).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from app.escalation.engine import Outcome
from app.study.escalation_rules import EscalationRules


@dataclass(frozen=True)
class SubjectFacts:
    """What the escalation reads of one subject."""

    infused_on: date | None
    """Day 0; None for a subject leukapheresed and never infused."""
    delivered_percent: float | None = None
    """The delivered dose as a percentage of the level's target (None: not recorded)."""
    dlt_onsets: Sequence[date] = field(default_factory=tuple)
    """Onset dates of the events the DLT assessment confirmed as DLTs."""
    ended_on: date | None = None
    """The date the subject withdrew, was lost or died, if so."""
    judged_not_evaluable: bool = False
    """The DLT assessment says not evaluable (say, a prohibited medication in the window)."""


def window_end(rules: EscalationRules, infused_on: date) -> date:
    """The last day of the DLT window (day `window_days`, inclusive)."""
    return infused_on + timedelta(days=rules.window_days)


def off_target(rules: EscalationRules, facts: SubjectFacts) -> bool:
    """The delivered dose is outside the tolerance of the level's target."""
    percent = facts.delivered_percent
    return percent is not None and abs(percent - 100) > rules.dose_tolerance_percent


def outcome_of(rules: EscalationRules, facts: SubjectFacts, today: date) -> Outcome:
    """The subject's outcome today (module docstring)."""
    if facts.infused_on is None:
        return Outcome.NOT_INFUSED
    if off_target(rules, facts):
        return Outcome.NOT_EVALUABLE
    last = window_end(rules, facts.infused_on)
    if any(facts.infused_on <= onset <= last for onset in facts.dlt_onsets):
        return Outcome.DLT
    if facts.judged_not_evaluable or (facts.ended_on is not None and facts.ended_on <= last):
        return Outcome.NOT_EVALUABLE
    return Outcome.NO_DLT if today > last else Outcome.PENDING

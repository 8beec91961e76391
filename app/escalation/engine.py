"""The 3+3 dose escalation as a state machine (build spec §2.4), pure: it reads no clock and
no database. It is fed each subject's outcome in the order the outcomes became known and
answers the state of each level, the global state and the reason in words.

A subject's outcome (`Outcome`) is one of: infused and still in the DLT window (pending),
a DLT in the window, the window completed without DLT, infused but not evaluable (replaced),
or leukapheresed and never infused (not counted, replaced). A subject recorded pending is
recorded again once the outcome is known; the counts are over each subject's latest outcome.

Decisions (spec §2.2): a level is judged at 3 and at 6 evaluable subjects: 0 DLTs in 3, or at
most 1 in 6, clears it; 1 in fewer than 6 expands it to 6; 2 DLTs at any count exceed it at
once. Exceeding a level steps down: the level below is the MTD when it has 6 evaluable
subjects with at most 1 DLT, else it is expanded to 6 (de-escalation). A DLT at a level
already cleared below the current one re-opens that level and pauses higher infusions until
it is cleared again (`EscalationRules.late_dlt_pauses`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.study.escalation_rules import EscalationRules


class Outcome(StrEnum):
    """A subject's outcome, in the spec's scenario letters."""

    NO_DLT = "N"
    DLT = "T"
    NOT_EVALUABLE = "X"
    PENDING = "P"
    NOT_INFUSED = "M"


class LevelStatus(StrEnum):
    CLOSED = "CLOSED"
    OPEN_A = "OPEN_A"
    """Open for its first cohort."""
    OPEN_B = "OPEN_B"
    """Open to expand to the full cohort."""
    CLEARED = "CLEARED"
    EXCEEDED = "EXCEEDED"


class State(StrEnum):
    ESCALATING = "ESCALATING"
    DEESCALATING = "DEESCALATING"
    PAUSED_REVIEW = "PAUSED_REVIEW"
    MTD_DECLARED = "MTD_DECLARED"
    TOP_DOSE_TOLERATED = "TOP_DOSE_TOLERATED"
    STOPPED_NO_TOLERABLE_DOSE = "STOPPED_NO_TOLERABLE_DOSE"
    DSMB_SELECTION = "DSMB_SELECTION"
    EXPANSION = "EXPANSION"
    ENROLLMENT_CLOSED = "ENROLLMENT_CLOSED"


FINAL = frozenset({State.STOPPED_NO_TOLERABLE_DOSE})
"""States nothing changes any more (not even the cap of infused subjects): the study has
stopped; subjects in their window are still followed and counted."""


@dataclass
class LevelCounts:
    """One level's counts over its subjects' latest outcomes, and its status."""

    status: LevelStatus = LevelStatus.CLOSED
    infused: int = 0
    evaluable: int = 0
    dlt: int = 0
    pending: int = 0
    not_evaluable: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "status": str(self.status), "infused": self.infused, "evaluable": self.evaluable,
            "dlt": self.dlt, "pending": self.pending, "not_evaluable": self.not_evaluable,
        }  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """The global state, the level it concerns (None for a state without one) and why."""

    state: State
    level: str | None
    reason: str


@dataclass
class Escalation:
    """The state machine of one study's escalation; `record` each outcome as it is known."""

    rules: EscalationRules
    levels: tuple[str, ...]
    """The dose levels, lowest first."""
    counts: dict[str, LevelCounts] = field(init=False)
    outcomes: dict[str, tuple[str, Outcome]] = field(default_factory=dict, init=False)
    """Subject -> (level, latest outcome)."""
    decision: Decision = field(init=False)
    _resume: Decision | None = field(default=None, init=False)
    """The decision a pause for a late DLT at a lower level returns to."""

    def __post_init__(self) -> None:
        self.counts = {level: LevelCounts() for level in self.levels}
        first = self.levels[0]
        self.counts[first].status = LevelStatus.OPEN_A
        self.decision = Decision(
            State.ESCALATING, first, f"{first} is open for its first {self.rules.min_cohort}."
        )

    def record(self, subject: str, level: str, outcome: Outcome) -> Decision:
        """Record the subject's outcome at `level` (replacing what was recorded before) and
        re-evaluate the level; returns the decision as it stands."""
        if level not in self.counts:
            raise ValueError(f"unknown dose level {level}; the levels are {', '.join(self.levels)}")
        previous = self.outcomes.get(subject)
        self.outcomes[subject] = (level, outcome)
        for changed in {level, previous[0] if previous else level}:
            self._count(changed)
        self._evaluate(level)
        return self.current()

    @property
    def infused(self) -> int:
        """Subjects infused at any level."""
        return sum(c.infused for c in self.counts.values())

    def cohort(self, level: str) -> int:
        """The evaluable subjects `level` is judged on next: its first cohort, or the full
        cohort once expanded."""
        expanded = self.counts[level].status == LevelStatus.OPEN_B
        return self.rules.max_cohort if expanded else self.rules.min_cohort

    def room(self, level: str) -> int:
        """Subjects `level` may still take before its cohort is judged (those not evaluable
        free their places); 0 or less when full."""
        counts = self.counts[level]
        return self.cohort(level) - counts.evaluable - counts.pending

    def current(self) -> Decision:
        """The decision, with enrolment closed once the cap of infused subjects is reached."""
        infused = self.infused
        if infused >= self.rules.max_infused and self.decision.state not in FINAL:
            return Decision(
                State.ENROLLMENT_CLOSED, None,
                f"{infused} subjects are infused, the study's cap of {self.rules.max_infused}: "
                f"enrolment is closed ({self.decision.reason})",
            )  # fmt: skip
        return self.decision

    # -- counting and judging -----------------------------------------------------------------

    def _count(self, level: str) -> None:
        counts = self.counts[level]
        mine = [outcome for at, outcome in self.outcomes.values() if at == level]
        counts.infused = sum(outcome != Outcome.NOT_INFUSED for outcome in mine)
        counts.dlt = mine.count(Outcome.DLT)
        counts.evaluable = counts.dlt + mine.count(Outcome.NO_DLT)
        counts.pending = mine.count(Outcome.PENDING)
        counts.not_evaluable = mine.count(Outcome.NOT_EVALUABLE)

    def _evaluate(self, level: str) -> None:
        counts = self.counts[level]
        if self.decision.state in FINAL:
            return
        if counts.dlt >= 2:
            if counts.status != LevelStatus.EXCEEDED:
                self._exceed(level)
            return
        state, at = self.decision.state, self.decision.level
        if state == State.DEESCALATING and at == level:
            if self._confirmed(counts):
                counts.status = LevelStatus.CLEARED
                self._decide(State.MTD_DECLARED, level, self._mtd_reason(level))
            else:
                self._decide(state, level, self._expand_reason(level, "to confirm it as the MTD"))
            return
        if state == State.PAUSED_REVIEW and at == level:
            if self._confirmed(counts):
                counts.status = LevelStatus.CLEARED
                resume = self._resume or self.decision
                self._resume = None
                self._decide(
                    resume.state, resume.level,
                    f"{self._summary(level)}: {level} is cleared again; {resume.reason}",
                )  # fmt: skip
            return
        if counts.dlt == 1 and counts.evaluable < self.rules.max_cohort:
            self._expand(level)
        elif self._clears(counts):
            self._clear(level)
        elif at == level:
            self._decide(state, level, self._waiting_reason(level))

    def _clears(self, counts: LevelCounts) -> bool:
        return (counts.dlt == 0 and counts.evaluable >= self.rules.min_cohort) or (
            counts.dlt <= 1 and counts.evaluable >= self.rules.max_cohort
        )

    def _confirmed(self, counts: LevelCounts) -> bool:
        """A level supports an MTD: the full cohort evaluable, at most 1 DLT, none pending."""
        return counts.evaluable >= self.rules.max_cohort and counts.dlt <= 1 and not counts.pending

    def _expand(self, level: str) -> None:
        counts = self.counts[level]
        was_cleared = counts.status == LevelStatus.CLEARED
        counts.status = LevelStatus.OPEN_B
        below_current = self._index(level) < self._index(self.decision.level)
        if was_cleared and below_current and self.rules.late_dlt_pauses:
            if self.decision.state != State.PAUSED_REVIEW:
                self._resume = self.decision
            self._decide(
                State.PAUSED_REVIEW, level,
                f"{self._summary(level)} after {level} was cleared: {level} is expanded to "
                f"{self.rules.max_cohort} evaluable subjects, and infusions above {level} "
                f"pause until it is cleared again.",
            )  # fmt: skip
        elif self.decision.level == level:
            self._decide(self.decision.state, level, self._expand_reason(level, ""))

    def _clear(self, level: str) -> None:
        counts = self.counts[level]
        if counts.status in (LevelStatus.CLEARED, LevelStatus.CLOSED):
            return
        if self.rules.require_no_pending_for_escalation and counts.pending:
            self._decide(self.decision.state, level, self._waiting_reason(level))
            return
        counts.status = LevelStatus.CLEARED
        index = self._index(level)
        if index + 1 < len(self.levels):
            above = self.levels[index + 1]
            self.counts[above].status = LevelStatus.OPEN_A
            self._decide(
                State.ESCALATING, above,
                f"{self._summary(level)}: {level} is cleared; escalate to {above} once the "
                f"board decides.",
            )  # fmt: skip
        elif counts.evaluable >= self.rules.max_cohort or not self.rules.confirm_top_dose:
            self._decide(
                State.TOP_DOSE_TOLERATED, level,
                f"{self._summary(level)}: the top level {level} is tolerated (no MTD reached); "
                "the board selects the levels to expand.",
            )  # fmt: skip
        else:
            counts.status = LevelStatus.OPEN_B
            self._decide(
                State.ESCALATING,
                level,
                self._expand_reason(level, "to confirm the top dose"),
            )

    def _exceed(self, level: str) -> None:
        counts = self.counts[level]
        counts.status = LevelStatus.EXCEEDED
        for above in self.levels[self._index(level) + 1 :]:
            if self.counts[above].status in (LevelStatus.OPEN_A, LevelStatus.OPEN_B):
                self.counts[above].status = LevelStatus.CLOSED
        exceeded = (
            f"{self._summary(level)}: {level} exceeds the limit (at most 1 DLT in "
            f"{self.rules.max_cohort}) and closes; subjects in their window are followed"
        )
        index = self._index(level)
        if index == 0:
            self._resume = None
            self._decide(
                State.STOPPED_NO_TOLERABLE_DOSE,
                None,
                f"{exceeded}. No lower level is defined: the study stops with no tolerable dose.",
            )
            return
        below = self.levels[index - 1]
        lower = self.counts[below]
        if lower.dlt >= 2:
            self._exceed(below)
        elif self._confirmed(lower):
            lower.status = LevelStatus.CLEARED
            self._decide(State.MTD_DECLARED, below, f"{exceeded}. {self._mtd_reason(below)}")
        else:
            lower.status = LevelStatus.OPEN_B
            self._decide(
                State.DEESCALATING,
                below,
                f"{exceeded}. {self._expand_reason(below, 'to confirm it as the MTD')}",
            )

    def _decide(self, state: State, level: str | None, reason: str) -> None:
        self.decision = Decision(state, level, reason)

    def _index(self, level: str | None) -> int:
        return self.levels.index(level) if level in self.levels else len(self.levels)

    # -- words --------------------------------------------------------------------------------

    def _summary(self, level: str) -> str:
        counts = self.counts[level]
        dlts = "1 DLT" if counts.dlt == 1 else f"{counts.dlt} DLTs"
        text = f"{level}: {dlts} in {counts.evaluable} evaluable"
        if counts.pending:
            text += f", {counts.pending} in the {self.rules.window_days}-day window"
        return text

    def _expand_reason(self, level: str, purpose: str) -> str:
        counts = self.counts[level]
        missing = max(self.rules.max_cohort - counts.evaluable - counts.pending, 0)
        why = f" {purpose}" if purpose else ""
        return (
            f"{self._summary(level)}: treat {level} to {self.rules.max_cohort} evaluable "
            f"subjects{why} ({missing} more to enrol)."
        )

    def _waiting_reason(self, level: str) -> str:
        counts = self.counts[level]
        missing = self.room(level)
        if counts.pending and missing <= 0:
            return f"{self._summary(level)}: wait for the window to close before deciding."
        replaced = (
            f" ({counts.not_evaluable} not evaluable, replaced)" if counts.not_evaluable else ""
        )
        return f"{self._summary(level)}{replaced}: enrol {missing} more at {level}."

    def _mtd_reason(self, level: str) -> str:
        return (
            f"{self._summary(level)}: {level} is the maximum tolerated dose; the board selects "
            "the levels to expand."
        )

"""What the safety board may decide, checked against the engine (build spec §2.4, "After
escalation ends"): the board selects 1 to `expansion_levels` levels to expand, each cleared
and not above the MTD (or any cleared level when the top dose was tolerated)."""

from __future__ import annotations

from collections.abc import Sequence

from app.escalation.engine import Escalation, LevelStatus, State

SELECTABLE_AFTER = frozenset({State.MTD_DECLARED, State.TOP_DOSE_TOLERATED})
"""The states in which escalation has ended and the board selects expansion levels."""


def selection_refusal(escalation: Escalation, levels: Sequence[str]) -> str | None:
    """Why the board may not select `levels` for expansion now (None: it may)."""
    decision = escalation.current()
    rules = escalation.rules
    if decision.state not in SELECTABLE_AFTER:
        return (
            f"Expansion levels are selected once escalation has ended (an MTD declared or the "
            f"top dose tolerated); the escalation is {decision.state}."
        )
    chosen = list(dict.fromkeys(levels))
    if not 1 <= len(chosen) <= rules.expansion_levels:
        return f"Select 1 to {rules.expansion_levels} levels to expand, not {len(chosen)}."
    ceiling = escalation.levels.index(decision.level) if decision.level else -1
    for level in chosen:
        if level not in escalation.counts:
            return f"{level} is not a dose level of the study."
        status = escalation.counts[level].status
        if status != LevelStatus.CLEARED:
            return f"{level} is {status}: only a cleared level can be expanded."
        if escalation.levels.index(level) > ceiling:
            return f"{level} is above the MTD {decision.level}."
    return None

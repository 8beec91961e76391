"""What the next cohort at a level could lead to, pure: every count of DLTs among the subjects
who fill the level's room, and the decision the engine would then make. The board sees before
the cohort is infused what each outcome would mean (build spec §2.4).

The engine is copied, never changed: the hypothetical subjects are recorded on a copy, every
one evaluated (k with a DLT, the rest without), after those already in their window.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from app.escalation.engine import Decision, Escalation, Outcome


@dataclass(frozen=True)
class Possibility:
    """`dlts` DLTs among the `size` next subjects at `level`, and what the engine decides."""

    level: str
    size: int
    dlts: int
    decision: Decision


def next_cohort(escalation: Escalation, level: str) -> list[Possibility]:
    """Each outcome, from 0 DLTs to one per subject, of the subjects who fill `level`'s room
    (`Escalation.room`); empty when the level has no room (its cohort is full or in its
    window). The engine passed in is left as it was."""
    size = escalation.room(level)
    if size <= 0:
        return []
    found = []
    for dlts in range(size + 1):
        branch = copy.deepcopy(escalation)
        first = len(branch.outcomes) + 1
        subjects = [f"next-{first + n}" for n in range(size)]
        for subject in subjects:
            branch.record(subject, level, Outcome.PENDING)
        for n, subject in enumerate(subjects):
            branch.record(subject, level, Outcome.NO_DLT if n < size - dlts else Outcome.DLT)
        found.append(Possibility(level, size, dlts, branch.current()))
    return found

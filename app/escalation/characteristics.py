"""The design's operating characteristics, computed exactly: every outcome path of the study's
own engine and rules, each with its probability, for given true DLT rates per level (not
Monte Carlo). The board follows the engine, every infused subject is evaluable, and a
cohort is infused together: at each step the engine says which level enrols and how many
(the first cohort, or the rest of the full cohort), and the path branches on how many of
them have a DLT (binomial). A path ends when an MTD is declared, the top dose is tolerated,
the study stops, or the cap of infused subjects is reached.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import comb

from app.escalation.engine import Escalation, LevelStatus, Outcome, State
from app.study.escalation_rules import EscalationRules

ENDS = frozenset(
    {State.MTD_DECLARED, State.TOP_DOSE_TOLERATED, State.STOPPED_NO_TOLERABLE_DOSE,
     State.ENROLLMENT_CLOSED}
)  # fmt: skip


@dataclass
class Characteristics:
    """Probabilities and expectations over every path (`operating_characteristics`)."""

    levels: tuple[str, ...]
    true_rates: tuple[float, ...]
    recommended: dict[str, float] = field(default_factory=dict)
    """Level -> probability it is the recommended dose: declared the MTD, or the top level
    tolerated."""
    stopped: float = 0.0
    """Probability the study stops with no tolerable dose."""
    capped: float = 0.0
    """Probability the cap of infused subjects ends the escalation first."""
    opened: dict[str, float] = field(default_factory=dict)
    """Level -> probability the engine opens it at some point."""
    subjects: dict[str, float] = field(default_factory=dict)
    """Level -> expected subjects treated there."""
    dlts: dict[str, float] = field(default_factory=dict)
    """Level -> expected DLTs there."""
    paths: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "true_rates": dict(zip(self.levels, self.true_rates, strict=True)),
            "recommended": self.recommended, "stopped": self.stopped, "capped": self.capped,
            "opened": self.opened, "subjects": self.subjects, "dlts": self.dlts,
            "expected_subjects": sum(self.subjects.values()),
            "expected_dlts": sum(self.dlts.values()), "paths": self.paths,
        }  # fmt: skip


def operating_characteristics(
    rules: EscalationRules, levels: tuple[str, ...], true_rates: tuple[float, ...]
) -> Characteristics:
    """The exact characteristics of the design under `true_rates` (one per level, 0 to 1);
    raises ValueError for rates that do not match the levels."""
    if len(true_rates) != len(levels):
        raise ValueError(f"give {len(levels)} true DLT rates, one per level ({', '.join(levels)})")
    if any(not 0 <= rate <= 1 for rate in true_rates):
        raise ValueError("each true DLT rate is a probability, from 0 to 1")
    found = Characteristics(levels, true_rates)
    for name in ("recommended", "opened", "subjects", "dlts"):
        setattr(found, name, dict.fromkeys(levels, 0.0))
    rate = dict(zip(levels, true_rates, strict=True))
    _explore(Escalation(rules, levels), 1.0, frozenset({levels[0]}), rate, found)
    return found


def _explore(
    escalation: Escalation,
    probability: float,
    opened: frozenset[str],
    rate: dict[str, float],
    found: Characteristics,
) -> None:
    decision = escalation.current()
    if decision.state in ENDS:
        _end(escalation, probability, opened, found)
        return
    level, size = _next_cohort(escalation)
    p = rate[level]
    for dlts in range(size + 1):
        chance = comb(size, dlts) * p**dlts * (1 - p) ** (size - dlts)
        if chance == 0:
            continue
        branch = copy.deepcopy(escalation)
        first = len(branch.outcomes) + 1
        subjects = [f"S{first + n}" for n in range(size)]
        for subject in subjects:
            branch.record(subject, level, Outcome.PENDING)
        for n, subject in enumerate(subjects):
            branch.record(subject, level, Outcome.DLT if n < dlts else Outcome.NO_DLT)
        now_open = {at for at, c in branch.counts.items() if c.status != LevelStatus.CLOSED}
        _explore(branch, probability * chance, opened | now_open, rate, found)


def _next_cohort(escalation: Escalation) -> tuple[str, int]:
    """The level that enrols next and how many: its first cohort, or up to the full one;
    no more than the cap allows."""
    level = escalation.current().level
    assert level is not None
    size = max(escalation.room(level), 1)
    return level, min(size, escalation.rules.max_infused - escalation.infused)


def _end(
    escalation: Escalation, probability: float, opened: frozenset[str], found: Characteristics
) -> None:
    decision = escalation.current()
    found.paths += 1
    if decision.state == State.STOPPED_NO_TOLERABLE_DOSE:
        found.stopped += probability
    elif decision.state == State.ENROLLMENT_CLOSED:
        found.capped += probability
    elif decision.level is not None:
        found.recommended[decision.level] += probability
    for level, counts in escalation.counts.items():
        found.subjects[level] += probability * counts.infused
        found.dlts[level] += probability * counts.dlt
        if level in opened:
            found.opened[level] += probability

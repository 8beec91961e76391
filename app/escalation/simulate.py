"""Simulating the escalation for the protocol team: the build spec's scenario notation run
through the study's own engine (`trialdesk escalation simulate`).

Notation: levels separated by `;`, each `LEVEL: cohorts`, cohorts separated by spaces or `+`,
one letter per subject (N evaluable without DLT, T DLT in the window, X infused but not
evaluable, P infused and still in the window, M leukapheresed, never infused). The subjects
of a cohort are infused together, then their outcomes become known in the order written:
`DL3: NNNP` waits for the fourth subject's window, `DL3: NNN P` escalates before the fourth
is infused. A level may come back (`DL1: NNN; DL2: NTT; DL1: NNT`: de-escalation enrolment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.escalation.engine import Decision, Escalation, Outcome
from app.study.escalation_rules import EscalationRules


class ScenarioError(ValueError):
    """A scenario that is not in the notation; the message names what is wrong."""


def parse_scenario(text: str, levels: tuple[str, ...]) -> list[tuple[str, list[Outcome]]]:
    """The cohorts of `text`, in order: each its level and its subjects' outcomes."""
    cohorts: list[tuple[str, list[Outcome]]] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        level, colon, letters = part.partition(":")
        level = level.strip()
        if not colon:
            raise ScenarioError(f"'{part}' needs a level and a colon, e.g. 'DL1: NNT'")
        if level not in levels:
            raise ScenarioError(f"unknown dose level '{level}'; the levels are {', '.join(levels)}")
        for cohort in letters.replace("+", " ").split():
            cohorts.append((level, [_outcome(letter, level) for letter in cohort]))
    if not cohorts:
        raise ScenarioError(f"'{text}' has no subjects")
    return cohorts


def _outcome(letter: str, level: str) -> Outcome:
    try:
        return Outcome(letter)
    except ValueError:
        raise ScenarioError(
            f"'{letter}' at {level} is not an outcome: use N, T, X, P or M"
        ) from None


@dataclass(frozen=True)
class Simulation:
    scenario: str
    decision: Decision
    escalation: Escalation
    steps: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """The scenario's result as `--json` prints it."""
        return {
            "scenario": self.scenario, "state": str(self.decision.state),
            "level": self.decision.level,
            "levels": {level: c.as_json() for level, c in self.escalation.counts.items()},
            "steps": self.steps, "reason": self.decision.reason,
        }  # fmt: skip

    def as_text(self) -> str:
        lines = [self.scenario]
        for step in self.steps:
            at = f" {step['level_after']}" if step["level_after"] else ""
            lines.append(
                f"  {step['subject']:>3} {step['level']} {step['outcome']}  ->  {step['state']}{at}"
            )
        at = f" {self.decision.level}" if self.decision.level else ""
        lines.append(f"  decision: {self.decision.state}{at}: {self.decision.reason}")
        return "\n".join(lines)


def simulate(rules: EscalationRules, levels: tuple[str, ...], scenario: str) -> Simulation:
    """Run `scenario` through the engine, one subject at a time; raises ScenarioError."""
    escalation = Escalation(rules, levels)
    steps = []
    number = 0
    for level, outcomes in parse_scenario(scenario, levels):
        subjects = [f"S{number + n}" for n in range(1, len(outcomes) + 1)]
        for subject, outcome in zip(subjects, outcomes, strict=True):  # infused together
            infused = Outcome.NOT_INFUSED if outcome == Outcome.NOT_INFUSED else Outcome.PENDING
            escalation.record(subject, level, infused)
        for subject, outcome in zip(subjects, outcomes, strict=True):  # then each outcome
            number += 1
            decision = escalation.record(subject, level, outcome)
            steps.append({
                "subject": number, "level": level, "outcome": str(outcome),
                "state": str(decision.state), "level_after": decision.level,
            })  # fmt: skip
    return Simulation(scenario.strip(), escalation.current(), escalation, steps)

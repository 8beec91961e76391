"""`trialdesk study check` for `escalation.yaml`: the rules need dose levels to escalate over,
and the board cannot expand more levels than the study has."""

from __future__ import annotations

from app.study.loader import Study
from app.study.problems import Problem


def check_escalation(study: Study) -> list[Problem]:
    """Every problem of the study's escalation rules against its dose levels (none without
    rules)."""
    rules = study.escalation
    if rules is None:
        return []
    source = next(s for display, s in study.sources.items() if display.endswith("escalation.yaml"))
    levels = len(study.info.dose_levels)
    if levels == 0:
        return [source.problem((), "a dose escalation needs the dose levels of study.yaml")]
    if rules.expansion_levels > levels:
        return [
            source.problem(
                ("expansion_levels",),
                f"expansion_levels is {rules.expansion_levels}, but the study has {levels} "
                "dose levels",
            )
        ]
    return []

"""The arms of a dose-finding study and the arm a subject actually received.

An arm is a pair (dose level, phase): the same level given in the dose escalation and in the
expansion is two arms ("DL3-ESC", "DL3-EXP"), as the protocol plans them. Its code is the
level's code and the phase's abbreviation that the mapping gives (`phase_codes`, e.g.
`{ESCALATION: ESC}`; the phase code itself when the mapping gives none), to keep within the
20 characters of SDTMIG 3.4's ARMCD; its description names the level, the phase and the dose
("DL3 dose escalation: 1x10^8 CAR-T cells"). A subject assigned a level without a phase has
the level's arm alone ("DL3", "DL3: 1x10^8 CAR-T cells").

The actual arm is judged by the delivered dose (`delivered_level`): the level the infusion
records when the dose delivered is within the study's tolerance of that level's target (its
percent of target), else the level of the same phase whose target the delivered dose is
within tolerance of, else none: an unplanned treatment (SDTMIG 3.4: ACTARMCD and ACTARM null,
ARMNRS UNPLANNED TREATMENT, ACTARMUD describing what was given).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.numbers import plain_text, round_half_up
from app.study.loader import Study
from app.study.model import DoseLevel


@dataclass(frozen=True)
class Arm:
    code: str
    """ARMCD / ACTARMCD."""
    label: str
    """ARM / ACTARM."""


def dose_level(study: Study, code: str) -> DoseLevel | None:
    return next((level for level in study.info.dose_levels if level.code == code), None)


def arm_of(
    study: Study, level_code: str, phase_code: str | None, phase_codes: Mapping[str, str]
) -> Arm:
    """The arm of `level_code` in `phase_code` (see the module docstring); a code the study
    does not define stays as it is, without a dose."""
    level = dose_level(study, level_code)
    dose = f": {level.label}" if level else ""
    phase = next((p for p in study.info.phases if p.code == phase_code), None)
    if phase_code is None:
        return Arm(level_code, f"{level_code}{dose}")
    phase_label = phase.label if phase else phase_code
    return Arm(
        f"{level_code}-{phase_codes.get(phase_code, phase_code)}",
        f"{level_code} {phase_label[:1].lower()}{phase_label[1:]}{dose}",
    )


def within(percent_of_target: float, tolerance_percent: float) -> bool:
    """Whether a dose at `percent_of_target` of a target is within +/- `tolerance_percent`."""
    return abs(percent_of_target - 100) <= tolerance_percent


def delivered_level(
    study: Study,
    recorded: str,
    percent_of_target: float,
    delivered: float | None,
    tolerance_percent: float,
) -> str | None:
    """The level a delivered dose belongs to: `recorded` (the level the infusion form names)
    when its percent of target is within tolerance; else the level whose target `delivered`
    (in the levels' unit) is within tolerance of, the nearest if several; else None, an
    unplanned treatment."""
    if within(percent_of_target, tolerance_percent):
        return recorded
    if delivered is None:
        return None
    candidates = [
        (abs(delivered / level.dose * 100 - 100), level.code)
        for level in study.info.dose_levels
        if within(delivered / level.dose * 100, tolerance_percent)
    ]
    return min(candidates)[1] if candidates else None


def unplanned_description(study: Study, recorded: str, percent_of_target: float) -> str:
    """ACTARMUD of an unplanned treatment: "Infused at 148% of the DL1 target dose of 25 10^6
    CAR-T cells"."""
    level = dose_level(study, recorded)
    target = f" of {_number(level.dose)} {level.unit}" if level else ""
    return f"Infused at {_number(percent_of_target)}% of the {recorded} target dose{target}"


def _number(value: float) -> str:
    return plain_text(round_half_up(value, 1))

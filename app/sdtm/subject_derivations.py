"""Derivations of the subject-level domains DM, DS and IE (registered on import).

What they read is written in the mapping (`exports/DM.yaml`): the status of a screen failure,
the items that record the treatment, the dose level given and the dose delivered, the end of
study, the last contact and the death. Nothing here names a study.
In a dose-finding study (`level`) an arm is a dose level in a phase (`app.sdtm.arms`): the
planned arm is the level and phase assigned at enrolment (the subject's, the one source), the
actual arm the level the delivered dose belongs to, in the same phase. A study of one arm
names it instead (`arm_code`, `arm_label`): planned once the subject has left the subject
path's first status, actual once treated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.sdtm.arms import Arm, arm_of, delivered_level, unplanned_description
from app.sdtm.derive import RecordContext, Value, day_of, derivation


@dataclass(frozen=True)
class _Arms:
    """The mapping's arguments that say how a subject's arms are found."""

    screen_failed: str
    treated: str
    level: str | None = None
    """FORM.ITEM of the dose level given (dose-finding studies)."""
    delivered_percent: str | None = None
    """FORM.ITEM of the delivered dose as a percent of the level's target."""
    delivered_dose: str | None = None
    """FORM.ITEM of the delivered dose, in the unit of the study's dose levels."""
    phase_codes: Mapping[str, str] = field(default_factory=dict)
    """Phase code -> its abbreviation in arm codes (`ESCALATION: ESC`)."""
    arm_code: str | None = None
    """The code of the one arm (single-arm studies without dose levels)."""
    arm_label: str | None = None
    started: str | None = None
    """FORM.ITEM of a treatment of the arm given before `treated` (lymphodepletion before a
    cell infusion): a subject who received it but not `treated` is treated, in the planned
    arm (SDTMIG: a subject who goes through part of an arm's elements is in that arm)."""


@dataclass(frozen=True)
class _Actual:
    """What the subject received: nothing (not treated), an arm, or no arm (unplanned)."""

    treated: bool
    arm: Arm | None = None
    unplanned: str | None = None
    """ACTARMUD: what an unplanned treatment gave."""


def _planned(context: RecordContext, arms: _Arms) -> Arm | None:
    """The planned arm; None for a screen failure or a subject not yet assigned."""
    subject = context.subject
    if subject.status == arms.screen_failed:
        return None
    if arms.level:
        if subject.dose_level is None:
            return None
        return arm_of(context.study, subject.dose_level, subject.phase, arms.phase_codes)
    if subject.status == context.study.subject_path.initial:
        return None
    return _one_arm(arms)


def _one_arm(arms: _Arms) -> Arm | None:
    return Arm(arms.arm_code, arms.arm_label or arms.arm_code) if arms.arm_code else None


def _actual(context: RecordContext, arms: _Arms) -> _Actual:
    """The actual arm (see the module docstring); not treated for a screen failure, while
    `treated` is not collected or (dose-finding) while the level given is not, unless the
    arm's treatment `started` (then the planned arm). Without a tolerance (no escalation
    rules) or a delivered dose in the mapping, the recorded level is the actual arm."""
    data = context.data
    if context.subject.status == arms.screen_failed:
        return _Actual(treated=False)
    recorded = data.first(arms.level) if arms.level else None
    if data.first(arms.treated) is None or (arms.level and recorded is None):
        if arms.started and data.first(arms.started) is not None:
            planned = _planned(context, arms)
            return _Actual(treated=planned is not None, arm=planned)
        return _Actual(treated=False)
    if recorded is None:
        return _Actual(treated=True, arm=_one_arm(arms))
    percent = _number(context, arms.delivered_percent)
    rules = context.study.escalation
    level: str | None = recorded
    if rules is not None and percent is not None:
        delivered = _number(context, arms.delivered_dose)
        tolerance = rules.dose_tolerance_percent
        level = delivered_level(context.study, recorded, percent, delivered, tolerance)
    if level is None:
        assert percent is not None  # only a known percent outside tolerance is unplanned
        return _Actual(True, unplanned=unplanned_description(context.study, recorded, percent))
    return _Actual(True, arm_of(context.study, level, context.subject.phase, arms.phase_codes))


def _number(context: RecordContext, reference: str | None) -> float | None:
    """The subject's first value of `FORM.ITEM` as a number; None when not collected."""
    text = context.data.first(reference) if reference else None
    return None if text is None else float(text)


@derivation("arm")
def _arm(
    context: RecordContext,
    actual: bool,
    part: str,
    screen_failed: str,
    treated: str,
    level: str | None = None,
    phase_codes: Mapping[str, str] | None = None,
    delivered_percent: str | None = None,
    delivered_dose: str | None = None,
    arm_code: str | None = None,
    arm_label: str | None = None,
    started: str | None = None,
) -> Value:
    """ARMCD/ACTARMCD (`part: code`, e.g. "DL3-ESC") or ARM/ACTARM (`part: label`, e.g.
    "DL3 dose escalation: 1x10^8 CAR-T cells", or the one arm's `arm_label`); null for a
    screen failure, a subject not yet assigned, (actual) not yet treated or treated outside
    every arm."""
    arms = _Arms(
        screen_failed, treated, level, delivered_percent, delivered_dose, phase_codes or {},
        arm_code, arm_label, started,
    )  # fmt: skip
    found = _actual(context, arms).arm if actual else _planned(context, arms)
    if found is None:
        return None
    return found.code if part == "code" else found.label


@derivation("unplanned_arm")
def _unplanned_arm(
    context: RecordContext,
    screen_failed: str,
    treated: str,
    level: str,
    delivered_percent: str,
    delivered_dose: str,
    started: str | None = None,
) -> Value:
    """ACTARMUD: for a treatment outside every arm, the dose delivered against the recorded
    level's target ("Infused at 148% of the DL1 target dose of 25 10^6 CAR-T cells")."""
    arms = _Arms(screen_failed, treated, level, delivered_percent, delivered_dose, started=started)
    return _actual(context, arms).unplanned


@derivation("arm_null_reason")
def _arm_null_reason(
    context: RecordContext,
    screen_failed: str,
    treated: str,
    level: str | None = None,
    delivered_percent: str | None = None,
    delivered_dose: str | None = None,
    arm_code: str | None = None,
    started: str | None = None,
) -> Value:
    """ARMNRS per SDTMIG 3.4 (one variable for the planned and the actual arm; CT C142179):
    SCREEN FAILURE, NOT ASSIGNED, ASSIGNED, NOT TREATED for an assigned subject never
    treated, or UNPLANNED TREATMENT for a treatment outside every arm."""
    if context.subject.status == screen_failed:
        return "SCREEN FAILURE"
    arms = _Arms(
        screen_failed, treated, level, delivered_percent, delivered_dose, arm_code=arm_code,
        started=started,
    )  # fmt: skip
    if _planned(context, arms) is None:
        return "NOT ASSIGNED"
    actual = _actual(context, arms)
    if not actual.treated:
        return "ASSIGNED, NOT TREATED"
    return "UNPLANNED TREATMENT" if actual.arm is None else None


@derivation("subject_phase")
def _subject_phase(context: RecordContext) -> Value:
    """The study phase assigned at enrolment, with the dose level."""
    return context.subject.phase


@derivation("reference_end")
def _reference_end(context: RecordContext, treated: str, end: str) -> Value:
    """RFENDTC: for treated subjects (`treated` collected), the end of study date `end`."""
    if context.data.first(treated) is None:
        return None
    return context.data.first(end)


@derivation("participation_end")
def _participation_end(context: RecordContext, dates: Sequence[str]) -> Value:
    """RFPENDTC: the latest of the collected `dates` (end of study, last contact, death)."""
    found = [
        value
        for reference in dates
        if (value := context.data.first(reference)) is not None and day_of(value) is not None
    ]
    return max(found, key=lambda value: value[:10]) if found else None


@derivation("exposure_start")
def _exposure_start(context: RecordContext, dates: Sequence[str]) -> Value:
    """RFXSTDTC: the earliest value of any of the `dates` (FORM.ITEM of every treatment's
    start, every row: each lymphodepletion dose and the infusion), as collected; the
    earliest EXSTDTC when `dates` are EX's sources."""
    found = _complete_values(context, dates)
    return min(found) if found else None


@derivation("exposure_end")
def _exposure_end(context: RecordContext, dates: Sequence[str]) -> Value:
    """RFXENDTC: the latest value of any of the `dates` (every treatment's end)."""
    found = _complete_values(context, dates)
    return max(found) if found else None


def _complete_values(context: RecordContext, dates: Sequence[str]) -> list[str]:
    """Every collected value of the `dates` with a complete day: ISO 8601 texts of complete
    dates compare as their moments do."""
    return [
        value
        for reference in dates
        for value in context.data.all(reference)
        if day_of(value) is not None
    ]


@derivation("death_flag")
def _death_flag(context: RecordContext, death: str) -> Value:
    """DTHFL: Y when the date of death `death` is collected, else null."""
    return "Y" if context.data.first(death) else None

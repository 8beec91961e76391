"""Derivations of the subject-level domains DM, DS and IE (registered on import).

What they read is written in the mapping (`exports/DM.yaml`): the status of a screen failure,
the items that record the treatment, the dose level given, the end of study, the last contact
and the death, and the code list that decodes a dose level. Nothing here names a study.
In a dose-finding study (`level`) the planned arm is the dose level assigned at enrolment (the
subject's, the one source) and the actual arm the dose level the treatment records. A study of
one arm names it instead (`arm_code`, `arm_label`): planned once the subject has left the
subject path's first status, actual once treated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.sdtm.derive import RecordContext, Value, day_of, derivation


@dataclass(frozen=True)
class _Arms:
    """The mapping's arguments that say how a subject's arms are found."""

    screen_failed: str
    treated: str
    level: str | None = None
    """FORM.ITEM of the dose level given (dose-finding studies)."""
    arm_code: str | None = None
    """The code of the one arm (single-arm studies without dose levels)."""


def _arm_code(context: RecordContext, arms: _Arms, *, actual: bool) -> str | None:
    """The planned or actual arm's code (see the module docstring); None for a screen failure,
    a subject not yet assigned, or (actual) not yet treated."""
    if context.subject.status == arms.screen_failed:
        return None
    if actual:
        if context.data.first(arms.treated) is None:
            return None
        return context.data.first(arms.level) if arms.level else arms.arm_code
    if arms.level:
        return context.subject.dose_level
    assigned = context.subject.status != context.study.subject_path.initial
    return arms.arm_code if assigned else None


@derivation("arm")
def _arm(
    context: RecordContext,
    actual: bool,
    part: str,
    screen_failed: str,
    treated: str,
    level: str | None = None,
    codelist: str | None = None,
    arm_code: str | None = None,
    arm_label: str | None = None,
) -> Value:
    """ARMCD/ACTARMCD (`part: code`) or ARM/ACTARM (`part: label`: the dose level's decode in
    `codelist`, e.g. "DL1: 2.5x10^7 CAR-T cells", or the one arm's `arm_label`)."""
    code = _arm_code(context, _Arms(screen_failed, treated, level, arm_code), actual=actual)
    if code is None or part == "code":
        return code
    if codelist is None:
        return arm_label or code
    return context.study.codelists[codelist].decode(code) or code


@derivation("arm_null_reason")
def _arm_null_reason(
    context: RecordContext,
    screen_failed: str,
    treated: str,
    level: str | None = None,
    arm_code: str | None = None,
) -> Value:
    """ARMNRS per SDTMIG 3.4 (one variable for the planned and the actual arm): SCREEN
    FAILURE, NOT ASSIGNED, or NOT TREATED for an assigned subject never treated."""
    if context.subject.status == screen_failed:
        return "SCREEN FAILURE"
    arms = _Arms(screen_failed, treated, level, arm_code)
    if _arm_code(context, arms, actual=False) is None:
        return "NOT ASSIGNED"
    if _arm_code(context, arms, actual=True) is None:
        return "NOT TREATED"
    return None


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


@derivation("death_flag")
def _death_flag(context: RecordContext, death: str) -> Value:
    """DTHFL: Y when the date of death `death` is collected, else null."""
    return "Y" if context.data.first(death) else None

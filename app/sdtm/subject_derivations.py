"""Derivations of the subject-level domains DM, DS and IE (registered on import).

What they read is written in the mapping (`exports/DM.yaml`): the status of a screen failure,
the items that record the infusion, the dose level infused, the end of study, the last contact
and the death, and the code list that decodes a dose level. Nothing here names a study.
The planned arm is the dose level assigned at enrolment (the subject's, the one source);
the actual arm is the dose level the infusion records.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.sdtm.derive import RecordContext, Value, day_of, derivation


def _arm_code(
    context: RecordContext, *, actual: bool, screen_failed: str, treated: str, level: str
) -> str | None:
    """Planned arm: the assigned dose level; actual arm: the dose level `level` records,
    once `treated` (the treatment's date) is collected."""
    if context.subject.status == screen_failed:
        return None
    if actual:
        return context.data.first(level) if context.data.first(treated) is not None else None
    return context.subject.dose_level


@derivation("arm")
def _arm(
    context: RecordContext,
    actual: bool,
    part: str,
    screen_failed: str,
    treated: str,
    level: str,
    codelist: str,
) -> Value:
    """ARMCD/ACTARMCD (`part: code`) or ARM/ACTARM (`part: label`, the dose level's decode in
    `codelist`, e.g. "DL1: 2.5x10^7 CAR-T cells")."""
    code = _arm_code(
        context, actual=actual, screen_failed=screen_failed, treated=treated, level=level
    )
    if code is None or part == "code":
        return code
    return context.study.codelists[codelist].decode(code) or code


@derivation("arm_null_reason")
def _arm_null_reason(context: RecordContext, screen_failed: str, treated: str, level: str) -> Value:
    """ARMNRS per SDTMIG 3.4 (one variable for the planned and the actual arm): SCREEN
    FAILURE, NOT ASSIGNED, or NOT TREATED for an assigned subject never treated."""
    if context.subject.status == screen_failed:
        return "SCREEN FAILURE"
    arms = {"screen_failed": screen_failed, "treated": treated, "level": level}
    if _arm_code(context, actual=False, **arms) is None:
        return "NOT ASSIGNED"
    if _arm_code(context, actual=True, **arms) is None:
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

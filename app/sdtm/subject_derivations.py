"""Derivations of the subject-level domains DM, DS and IE (registered on import)."""

from __future__ import annotations

from app.sdtm.derive import RecordContext, Value, day_of, derivation

SCREEN_FAILED_STATUS = "screen_failed"
DOSE_LEVEL_CODELIST = "CL.DOSELVL"


def _is_screen_failure(context: RecordContext) -> bool:
    return context.subject.status == SCREEN_FAILED_STATUS


def _arm_code(context: RecordContext, actual: bool) -> str | None:
    """Planned arm: the assigned dose level; actual arm: the dose level infused."""
    if _is_screen_failure(context):
        return None
    if actual:
        if context.data.first("EX.EXSTDTM") is None:
            return None
        return context.data.first("EX.DOSELVL") or context.subject.dose_level
    return context.data.first("IE.DOSELVL") or context.subject.dose_level


@derivation("arm")
def _arm(context: RecordContext, actual: bool, part: str) -> Value:
    """ARMCD/ACTARMCD (`part: code`) or ARM/ACTARM (`part: label`, the dose level's decode,
    e.g. "DL1: 2.5x10^7 CAR-T cells")."""
    code = _arm_code(context, actual)
    if code is None or part == "code":
        return code
    return context.study.codelists[DOSE_LEVEL_CODELIST].decode(code) or code


@derivation("arm_null_reason")
def _arm_null_reason(context: RecordContext) -> Value:
    """ARMNRS per SDTMIG 3.4 (one variable for the planned and the actual arm): SCREEN
    FAILURE, NOT ASSIGNED, or NOT TREATED for an assigned subject who was never infused."""
    if _is_screen_failure(context):
        return "SCREEN FAILURE"
    if _arm_code(context, actual=False) is None:
        return "NOT ASSIGNED"
    if _arm_code(context, actual=True) is None:
        return "NOT TREATED"
    return None


@derivation("reference_end")
def _reference_end(context: RecordContext) -> Value:
    """RFENDTC: for infused subjects, the end of study date (DS.DSSTDAT) once known."""
    if context.data.first("EX.EXSTDTM") is None:
        return None
    return context.data.first("DS.DSSTDAT")


@derivation("participation_end")
def _participation_end(context: RecordContext) -> Value:
    """RFPENDTC: the latest of end of study, last contact and death dates collected."""
    dates = [
        value
        for reference in ("DS.DSSTDAT", "DS.DSLCDAT", "DD.DTHDAT")
        if (value := context.data.first(reference)) is not None and day_of(value) is not None
    ]
    return max(dates, key=lambda value: value[:10]) if dates else None


@derivation("death_flag")
def _death_flag(context: RecordContext) -> Value:
    """DTHFL: Y when a date of death is collected, else null."""
    return "Y" if context.data.first("DD.DTHDAT") else None

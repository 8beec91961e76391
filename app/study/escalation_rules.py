"""The dose-escalation rules as study data: `escalation.yaml` (build spec §2.4), optional.

A 3+3 design is a handful of parameters; the levels are the study's dose levels, in order.
The defaults are the build spec's proposal for ZM001; another study states its own (say
cohorts of 3 without top-dose confirmation and a 21-day window) and needs no code.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from app.study.model import Definition


class SubjectFactsDef(Definition):
    """What the escalation reads of each subject's casebook: CEL over the check vocabulary
    (`forms/README.md`) without a form of its own (`FORM.ITEM` is the form's first instance)."""

    infused_on: str = Field(description="day 0, a date or datetime; null: never infused")
    delivered_percent: str = Field(description="the delivered dose as a percent of target")
    dlt_onsets: str = Field(description="a list of the onset dates of the subject's DLTs")
    ended_on: str = Field(description="the date the subject withdrew, was lost or died, or null")
    judged_not_evaluable: str = Field(
        default="false", description="true when the DLT assessment says not evaluable"
    )


class InfusionDef(Definition):
    """The form that records the infusion, the item of its date and of its dose level: a
    save that dates an infusion passes the gates (EC030-EC032)."""

    form: str
    date: str
    level: str


class EscalationCasebook(Definition):
    """Where the casebooks hold what the escalation reads: a study runs its escalation from
    its data with this, and simulates without it."""

    escalation_phase: str = Field(description="the phase code of subjects in the escalation")
    expansion_phase: str = Field(description="the phase code of subjects in the expansion")
    infusion: InfusionDef
    subject_facts: SubjectFactsDef


class EscalationRules(Definition):
    """The parameters of the 3+3 state machine, and where the casebook holds its facts."""

    casebook: EscalationCasebook | None = None

    min_cohort: int = Field(default=3, ge=1, description="evaluable subjects of a first cohort")
    max_cohort: int = Field(default=6, ge=2, description="evaluable subjects of an expanded level")
    window_days: int = Field(
        default=28, ge=1, description="the DLT window: infusion day 0 to this day, inclusive"
    )
    require_no_pending_for_escalation: bool = Field(
        default=True, description="no escalation while a subject at the level is in its window"
    )
    confirm_top_dose: bool = Field(
        default=True, description="the top level needs max_cohort evaluable subjects to stop"
    )
    stagger_days: int = Field(
        default=7, ge=0, description="days the first subject of a level is followed alone"
    )
    max_infused: int = Field(default=30, ge=1, description="enrolment closes at this many infused")
    late_dlt_pauses: bool = Field(
        default=True,
        description="a DLT at a cleared lower level re-opens it and pauses higher infusions",
    )
    dose_tolerance_percent: float = Field(
        default=20, ge=0, description="a delivered dose this far from target is not evaluable"
    )
    expansion_levels: int = Field(default=2, ge=1, description="levels the board may expand")

    @model_validator(mode="after")
    def _cohorts_in_order(self) -> EscalationRules:
        if self.max_cohort <= self.min_cohort:
            raise ValueError("max_cohort must be larger than min_cohort")
        return self

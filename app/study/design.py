"""The trial's design facts (`design:` of `study.yaml`), which SDTM's Trial Summary (TS) and
Trial Arms (TA) datasets report: phase, study type, intervention model, blinding,
randomisation, planned subjects, age and sex limits, the treatment and its class.

Every coded fact is a `Term`: the submission value (TSVAL), its code (TSVALCD) and the
terminology it comes from (TSVCDREF, default CDISC CT at the study's `ct_version`). The
section is optional and so is each key: TS reports the facts a study gives. The format is
documented in `forms/README.md`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from app.study.definition import Definition

ISO_8601_DURATION = r"^P(\d+[YMWD])+$"
"""A duration in years, months, weeks or days (P18Y, P6M): TS's AGEMIN and AGEMAX."""
CDISC_CT = "CDISC CT"


class Term(Definition):
    """A coded value: `value` (TSVAL), `code` (TSVALCD, e.g. the NCI C-code C15600) and the
    terminology the code is from (`reference`, TSVCDREF) at `version` (TSVCDVER; for CDISC CT
    the study's `ct_version` when not given). A term without a code is plain text."""

    value: str
    code: str | None = None
    reference: str = CDISC_CT
    version: str | None = None


def _plain_term(value: Any) -> Any:
    """Accept `treatment: ZM001 Injection` as short for `{value: ZM001 Injection}`."""
    return {"value": value} if isinstance(value, str) else value


class ArmAssignment(Definition):
    """Where subjects are assigned their arm: at the end of the element of `period` (TA's
    TABRANCH on that element, `rule` followed by the arm's description)."""

    period: str = Field(description="period OID of schedule.yaml, e.g. EP.SCREENING")
    rule: str = Field(description="e.g. Assigned at enrolment to")


class StudyDesign(Definition):
    """The design facts of `study.yaml` (`design:`), each optional; the TS parameter each
    gives is in brackets."""

    title: str | None = Field(default=None, description="the protocol's title (TITLE)")
    phase: Term | None = Field(default=None, description="trial phase (TPHASE)")
    study_type: Term | None = Field(default=None, description="study type (STYPE)")
    trial_types: tuple[Term, ...] = Field(default=(), description="trial types (TTYPE)")
    intervention_model: Term | None = Field(default=None, description="(INTMODEL)")
    blinding: Term | None = Field(default=None, description="blinding schema (TBLIND)")
    randomized: Term | None = Field(default=None, description="Y or N (RANDOM)")
    adaptive: Term | None = Field(default=None, description="Y or N (ADAPT)")
    healthy_subjects: Term | None = Field(default=None, description="Y or N (HLTSUBJI)")
    planned_subjects: int | None = Field(default=None, gt=0, description="(PLANSUB)")
    age_min: str | None = Field(default=None, pattern=ISO_8601_DURATION, description="(AGEMIN)")
    age_max: str | None = Field(default=None, pattern=ISO_8601_DURATION, description="(AGEMAX)")
    sex: Term | None = Field(default=None, description="sex of participants (SEXPOP)")
    treatment: Term | None = Field(default=None, description="investigational treatment (TRT)")
    pharmacologic_class: Term | None = Field(default=None, description="(PCLAS)")
    indication: Term | None = Field(default=None, description="disease or condition (INDIC)")
    therapeutic_area: Term | None = Field(default=None, description="(THERAREA)")
    arm_assignment: ArmAssignment | None = Field(
        default=None, description="where the arm is decided (TA's TABRANCH)"
    )

    _terms = field_validator(
        "phase", "study_type", "intervention_model", "blinding", "randomized", "adaptive",
        "healthy_subjects", "sex", "treatment", "pharmacologic_class", "indication",
        "therapeutic_area", mode="before",
    )(_plain_term)  # fmt: skip

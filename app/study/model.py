"""The study definition as frozen pydantic models, parsed from the YAML files in `forms/`.

These models check the shape of each file (types, required keys, no unknown keys). Checks that
need the whole study (references between files, expressions) live in `app.study.check`.
The YAML format is documented in `forms/README.md`.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from app.study.definition import Definition as Definition  # re-exported: the models' base
from app.study.design import StudyDesign

OID_PATTERN = r"^[A-Za-z][A-Za-z0-9._\-]*$"
NAME_PATTERN = r"^[A-Z][A-Z0-9_]*$"


class DataType(StrEnum):
    """Item data types; each maps to an ODM 1.3.2 DataType (see `odm_data_type`)."""

    TEXT = "text"
    INTEGER = "integer"
    FLOAT = "float"
    DATE = "date"
    PARTIAL_DATE = "partial_date"
    DATETIME = "datetime"
    TIME = "time"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MULTICHOICE = "multichoice"


class FutureDates(StrEnum):
    """What a date (or datetime) item does with a date after today at the site."""

    REFUSE = "refuse"
    FLAG = "flag"
    ALLOW = "allow"


class Range(Definition):
    """A closed numeric interval; either end may be open (None)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range is inverted: min {self.min} is greater than max {self.max}")
        return self

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"at least {self.min:g}"
        return f"at most {self.max:g}"


class ItemDef(Definition):
    """One question on a form (ODM ItemDef)."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str = Field(pattern=NAME_PATTERN, description="CDASH-style name, used in expressions")
    label: str
    type: DataType
    length: int | None = Field(default=None, gt=0, description="maximum length of text values")
    decimals: int | None = Field(default=None, ge=0, description="decimal places for floats")
    codelist: str | None = None
    units: str | None = None
    hard_range: Range | None = None
    soft_range: Range | None = None
    required: bool = False
    show_if: str | None = None
    derivation: str | None = None
    help: str | None = None
    future: FutureDates = Field(
        default=FutureDates.REFUSE,
        description="a date after today: refuse (the default: it has not happened), flag "
        "for review, or allow (a planned date)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ItemDef:
        is_coded = self.type in (DataType.CHOICE, DataType.MULTICHOICE)
        if is_coded and self.codelist is None:
            raise ValueError(f"item {self.name} of type {self.type} needs a codelist")
        if not is_coded and self.codelist is not None:
            raise ValueError(f"item {self.name} has a codelist but its type is {self.type}")
        is_numeric = self.type in (DataType.INTEGER, DataType.FLOAT)
        if not is_numeric and (self.hard_range or self.soft_range):
            raise ValueError(
                f"item {self.name} has a range but its type {self.type} is not numeric"
            )
        if self.derivation is not None and self.required:
            raise ValueError(f"item {self.name} is derived, so it cannot also be required")
        dated = self.type in (DataType.DATE, DataType.PARTIAL_DATE, DataType.DATETIME)
        if "future" in self.model_fields_set and not dated:
            raise ValueError(f"item {self.name} sets future but its type {self.type} is no date")
        return self

    @property
    def is_derived(self) -> bool:
        return self.derivation is not None


class ItemGroupDef(Definition):
    """A block of items on a form (ODM ItemGroupDef); repeating groups hold rows."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str = Field(pattern=NAME_PATTERN, description="name of the row list in expressions")
    label: str
    repeating: bool = False
    show_if: str | None = None
    rows: tuple[dict[str, str], ...] = Field(
        default=(),
        description="preset rows of a repeating group (item name to fixed value), e.g. one per "
        "inclusion criterion; presets are shown read-only and cannot be removed",
    )
    items: tuple[ItemDef, ...] = Field(min_length=1)


class FormDef(Definition):
    """An eCRF page (ODM FormDef)."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str = Field(
        pattern=NAME_PATTERN, description="short name, e.g. DM; prefix in expressions"
    )
    title: str
    version: str = Field(description="definition version, stored with every form entered under it")
    domain: str | None = Field(default=None, description="SDTM domain the form mostly feeds")
    description: str | None = None
    item_groups: tuple[ItemGroupDef, ...] = Field(min_length=1)

    @cached_property
    def item_names(self) -> dict[str, str]:
        """Item OID -> item name, over every group."""
        return {item.oid: item.name for group in self.item_groups for item in group.items}


class CodeListItem(Definition):
    code: str = Field(description="CDISC submission value")
    decode: str


class CodeList(Definition):
    """A controlled list of answers (ODM CodeList)."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str
    data_type: Literal["text", "integer"] = "text"
    nci_code: str | None = Field(default=None, description="NCI C-code of the CDISC codelist")
    items: tuple[CodeListItem, ...] = Field(min_length=1)

    @cached_property
    def codes(self) -> tuple[str, ...]:
        return tuple(item.code for item in self.items)

    def decode(self, code: str) -> str | None:
        return next((item.decode for item in self.items if item.code == code), None)


class CodeListFile(Definition):
    codelists: tuple[CodeList, ...]


class MeasurementUnit(Definition):
    oid: str = Field(pattern=OID_PATTERN)
    symbol: str
    name: str | None = None


class UnitFile(Definition):
    units: tuple[MeasurementUnit, ...]


class DoseLevel(Definition):
    """A dose level (a cohort of a dose-finding design): its code, label and planned dose."""

    code: str = Field(pattern=r"^DL-?\d+$")
    label: str
    dose: float = Field(gt=0, description="planned dose of the level, in `unit`")
    unit: str = Field(description="unit of the dose, e.g. 10^6 CAR-T cells, mg/kg")


class Phase(Definition):
    code: str = Field(pattern=NAME_PATTERN)
    label: str


class StudyInfo(Definition):
    """Identification of the study and its design parameters (`study.yaml`)."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str
    description: str
    protocol: str
    sponsor: str
    registry_id: str | None = None
    ct_version: str = Field(description="CDISC controlled terminology package the study pins")
    earliest_date: date = Field(
        default=date(1900, 1, 1), description="dates before it are refused as implausible"
    )
    dose_levels: tuple[DoseLevel, ...] = Field(
        default=(),
        description="dose levels a subject is assigned at enrolment; none in a study "
        "without dose finding",
    )
    phases: tuple[Phase, ...] = Field(
        default=(), description="study phases (escalation, expansion) assigned with a dose level"
    )
    design: StudyDesign | None = Field(
        default=None, description="the trial's design facts for SDTM TS (app.study.design)"
    )


class Anchor(Definition):
    """A date visits are timed from, taken from an item of a form (e.g. IC.ICDAT)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    source: str = Field(pattern=r"^[A-Z][A-Z0-9_]*\.[A-Z][A-Z0-9_]*$", description="FORM.ITEM")


class Element(Definition):
    """The SDTM trial element (TE) a subject goes through in a period: ETCD, ELEMENT and the
    rules, in words, that start and end it (TESTRL, TEENRL)."""

    code: str = Field(pattern=r"^[A-Z][A-Z0-9]{0,7}$", description="ETCD, at most 8 characters")
    name: str
    start_rule: str
    end_rule: str
    start_anchor: str | None = Field(
        default=None, description="anchor whose date/time starts it (else the period's first visit)"
    )
    start_day: int = Field(default=0, description="days after start_anchor (1: the next day)")


class Period(Definition):
    """A study period; its `epoch` is the SDTM EPOCH value, its `element` the trial element
    (TE) subjects go through in it, in every arm."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str
    epoch: str
    element: Element | None = None


class Window(Definition):
    """Allowed days relative to the anchor, inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    earliest: int = Field(alias="from")
    latest: int = Field(alias="to")


class ScheduledForm(Definition):
    form: str
    mandatory: bool = True


def _normalise_form_refs(value: Any) -> Any:
    """Accept `- F.DM` as short for `- {form: F.DM}` in visit form lists."""
    if isinstance(value, list | tuple):
        return [{"form": entry} if isinstance(entry, str) else entry for entry in value]
    return value


class Visit(Definition):
    """A scheduled or unscheduled visit (ODM StudyEventDef)."""

    oid: str = Field(pattern=OID_PATTERN)
    name: str
    visitnum: float
    period: str
    type: Literal["scheduled", "unscheduled"] = "scheduled"
    repeating: bool = Field(default=False, description="may occur several times (UNS, LTFU)")
    anchor: str | None = None
    day: int | None = Field(default=None, description="nominal day relative to the anchor")
    window: Window | None = None
    notes: str | None = None
    forms: tuple[ScheduledForm, ...] = Field(min_length=1)

    _forms = field_validator("forms", mode="before")(_normalise_form_refs)

    @model_validator(mode="after")
    def _timing(self) -> Visit:
        if self.type == "scheduled" and (self.anchor is None or self.day is None):
            raise ValueError(f"scheduled visit {self.oid} needs an anchor and a day")
        return self


class LogForm(Definition):
    """A form that belongs to no visit (adverse events, medications, ...)."""

    form: str
    repeating: bool = Field(
        default=False, description="one form per event (e.g. one CRS episode per form)"
    )


class Schedule(Definition):
    """Periods, anchors, visits and log forms (`schedule.yaml`)."""

    anchors: tuple[Anchor, ...]
    study_day_anchor: str | None = Field(
        default=None, description="the anchor whose date is study day 0 on the casebook"
    )
    periods: tuple[Period, ...] = Field(min_length=1)
    visits: tuple[Visit, ...] = Field(min_length=1)
    log_forms: tuple[LogForm, ...] = ()


class SubjectStatusDef(Definition):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    final: bool = Field(default=False, description="no transition leaves it")


class Undone(StrEnum):
    """What a later change that breaks a requirement of a status the subject has reached
    does: it is refused, or saved and flagged for the investigator (a status alert)."""

    REFUSE = "refuse"
    FLAG = "flag"


class Requirement(Definition):
    """What must hold before a transition: a complete form, or a CEL condition over
    FORM.ITEM values and `subject.dose_level` / `subject.phase`."""

    form: str | None = None
    condition: str | None = None
    message: str = Field(description="shown to the user while the requirement is not met")
    when_undone: Undone = Field(
        default=Undone.FLAG,
        description="a later change that breaks it, once the subject has made the transition",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Requirement:
        if (self.form is None) == (self.condition is None):
            raise ValueError("a requirement has either a form or a condition")
        return self


class Transition(Definition):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    sources: tuple[str, ...] = Field(alias="from", min_length=1)
    to: str
    label: str = Field(description="the action's name on the button, e.g. Enrol")
    permission: Literal["change_status", "enrol"] = "change_status"
    assign_dose_level: bool = False
    requires: tuple[Requirement, ...] = ()


class SubjectPath(Definition):
    """Subject statuses and the transitions between them (`subject_path.yaml`)."""

    initial: str
    statuses: tuple[SubjectStatusDef, ...] = Field(min_length=1)
    transitions: tuple[Transition, ...] = ()

    def status(self, code: str) -> SubjectStatusDef | None:
        return next((status for status in self.statuses if status.code == code), None)


def odm_data_type(item: ItemDef, codelist: CodeList | None) -> str:
    """The ODM 1.3.2 DataType of an item."""
    if item.type == DataType.CHOICE and codelist is not None:
        return codelist.data_type
    return {
        DataType.TEXT: "text",
        DataType.INTEGER: "integer",
        DataType.FLOAT: "float",
        DataType.DATE: "date",
        DataType.PARTIAL_DATE: "partialDate",
        DataType.DATETIME: "datetime",
        DataType.TIME: "time",
        DataType.BOOLEAN: "boolean",
        DataType.CHOICE: "text",
        DataType.MULTICHOICE: "text",
    }[item.type]


class SignedForm(Definition):
    """A form the investigator signs on its own (eligibility, DLT assessment, end of study)."""

    form: str = Field(description="the form's OID")
    meaning: str = Field(description="what the signature means, stated when signing")


class CasebookSignature(Definition):
    """The investigator's signature of a subject's whole casebook."""

    meaning: str = Field(description="what the signature means, stated when signing")


class SignatureSettings(Definition):
    """What the investigator signs (`signatures.yaml`, optional: a study without it signs
    nothing): forms one by one, the casebook, what each signature means, the legal reason
    (ODM SignatureDef), and whether open queries on the signed data refuse the signing."""

    legal_reason: str
    refuse_with_open_queries: bool = True
    casebook: CasebookSignature | None = None
    forms: tuple[SignedForm, ...] = ()

    def meaning_of(self, form_oid: str | None) -> str | None:
        """The meaning of the signature of `form_oid` (None: the casebook), or None when the
        study does not sign it."""
        if form_oid is None:
            return self.casebook.meaning if self.casebook else None
        return next((signed.meaning for signed in self.forms if signed.form == form_oid), None)

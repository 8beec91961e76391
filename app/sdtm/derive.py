"""Named derivations of SDTM variables: the registry, the context a derivation reads, and the
general derivations every domain uses (identifiers, visits, study days, dates). EPOCH and the
subject's elements and visits (SE, SV) are in `app.sdtm.subject_elements` and
`app.sdtm.subject_visits`.

A mapping names a derivation (`derivation: {name: study_day, args: {dtc: AESTDTC}}`); the
engine calls the registered function as `function(context, **args)` for each record. Domain
specific derivations live in `app.sdtm.domain_derivations` and register with the same
`@derivation("name")` decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TypeVar

from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import Visit

Value = str | float | None
"""What a derivation returns: Char text, a Num number, or null."""
DerivationFunction = Callable[..., Value]
"""`(context: RecordContext, **args) -> Value`."""

REFERENCE_START = "RFSTDTC"
"""The DM variable every --DY counts from."""

_REGISTRY: dict[str, DerivationFunction] = {}
_DERIVATION_MODULES = (
    "app.sdtm.subject_derivations",
    "app.sdtm.domain_derivations",
    "app.sdtm.subject_elements",
    "app.sdtm.subject_visits",
    "app.sdtm.collected_derivations",
)
T = TypeVar("T")


def derivation(name: str) -> Callable[[DerivationFunction], DerivationFunction]:
    """Register a function as the named derivation `name` (names are unique)."""

    def register(function: DerivationFunction) -> DerivationFunction:
        if name in _REGISTRY:
            raise ValueError(f"derivation {name!r} is registered twice")
        _REGISTRY[name] = function
        return function

    return register


def registered_derivations() -> Mapping[str, DerivationFunction]:
    """Every registered derivation, the domain ones included."""
    for module in _DERIVATION_MODULES:
        importlib.import_module(module)  # their decorators register on import
    return _REGISTRY


@dataclass(frozen=True)
class SubjectInfo:
    """The subject a record belongs to."""

    studyid: str
    subjid: str
    usubjid: str
    siteid: str
    dose_level: str | None
    phase: str | None
    status: str


@dataclass(frozen=True)
class RowValues:
    """One collected row: an item group repeat of a saved form, with where it was entered.
    `values` maps item name to canonical text (ISO 8601 dates, codes, plain decimals)."""

    form_oid: str
    form_name: str
    event_oid: str
    event_repeat: int
    form_repeat: int
    item_group_oid: str
    group_repeat: int
    visit_date: date | None
    values: Mapping[str, str]
    order: int
    """Creation order of the row (its database id): stable across re-exports."""

    @property
    def is_log(self) -> bool:
        return self.event_oid == LOG_EVENT_OID


@dataclass(frozen=True)
class DatedVisit:
    """A visit the subject had: a StudyEvent with a visit date, whether or not forms were
    entered at it."""

    event_oid: str
    repeat: int
    visit_date: date
    order: int
    """Creation order of the visit (its database id)."""


@dataclass(frozen=True)
class SubjectData:
    """All saved rows of one subject, in creation order, its dated visits and its anchor
    dates/times."""

    subject: SubjectInfo
    rows: tuple[RowValues, ...]
    anchors: Mapping[str, str]
    """Anchor id (consent, leukapheresis, infusion) -> collected date or datetime text."""

    study: Study = field(repr=False, compare=False)
    visits: tuple[DatedVisit, ...] = ()
    """Every dated visit of the subject, in creation order (a visit may have no forms)."""

    @cached_property
    def _rows_by_form(self) -> dict[str, list[RowValues]]:
        by_form: dict[str, list[RowValues]] = {}
        for row in self.rows:
            by_form.setdefault(row.form_name, []).append(row)
        return by_form

    def rows_of(self, form_name: str) -> list[RowValues]:
        """The rows of the subject's forms named `form_name`, in creation order."""
        return self._rows_by_form.get(form_name, [])

    def value(self, reference: str, row: RowValues | None) -> str | None:
        """Value of `ITEM` (of `row`) or `FORM.ITEM`: from `row` when it is a row of that
        form, else the first collected value."""
        if "." not in reference:
            return row.values.get(reference) if row is not None else None
        form_name, item = reference.split(".", 1)
        if row is not None and row.form_name == form_name:
            return row.values.get(item)
        return self.first(reference)

    def first(self, reference: str) -> str | None:
        """First collected value of `FORM.ITEM` (in creation order), or None."""
        form_name, item = reference.split(".", 1)
        return next(
            (row.values[item] for row in self.rows_of(form_name) if row.values.get(item)), None
        )

    def all(self, reference: str) -> list[str]:
        """Every collected value of `FORM.ITEM`, in creation order."""
        form_name, item = reference.split(".", 1)
        return [row.values[item] for row in self.rows_of(form_name) if row.values.get(item)]


def per_subject(compute: Callable[[SubjectData], T]) -> Callable[[SubjectData], T]:
    """Cache `compute(data)` for the subject being exported: the engine builds all records of
    one subject before the next, so one cached subject is enough (and memory stays flat)."""
    last: list[tuple[SubjectData, T]] = []

    def cached(data: SubjectData) -> T:
        if last and last[0][0] is data:
            return last[0][1]
        result = compute(data)
        last[:] = [(data, result)]
        return result

    return cached


@dataclass
class RecordContext:
    """What a derivation may read while one record is built.

    `variable(name)` gives any variable of this record, computing it first when it comes
    later in dataset order (`EPOCH` reads `DSSTDTC`, `--DY` reads `--STDTC`); `record` holds
    those computed so far. `row` is the source row (None for subject-level records, e.g. DM).
    `transposed_item` and `transposed_values` are the transposition entry of a findings
    record."""

    study: Study
    data: SubjectData
    domain: str
    row: RowValues | None
    seq: int
    record: dict[str, Value] = field(default_factory=dict)
    transposed_item: str | None = None
    transposed_values: Mapping[str, str | float] = field(default_factory=dict)
    reference_start: str | None = None
    """RFSTDTC of the subject (the first treatment, as the DM mapping derives it), for --DY."""
    computes: Mapping[str, Callable[[RecordContext], Value]] = field(default_factory=dict)
    """How each variable of the record is computed (set by the engine)."""

    def variable(self, name: str) -> Value:
        """Variable `name` of this record, computed now if it is not yet; None if unknown."""
        if name not in self.record and name in self.computes:
            self.record[name] = None  # a variable that (indirectly) reads itself gets null
            self.record[name] = self.computes[name](self)
        return self.record.get(name)

    def date_variable(self, name: str) -> str | None:
        value = self.variable(name)
        return value if isinstance(value, str) else None

    @property
    def subject(self) -> SubjectInfo:
        return self.data.subject

    def item(self, reference: str) -> str | None:
        """Value of `ITEM` (the source row) or `FORM.ITEM` (the source row when it is a row
        of that form, else the subject's first collected value)."""
        return self.data.value(reference, self.row)


# -- general derivations ---------------------------------------------------------------------


@derivation("studyid")
def _studyid(context: RecordContext) -> Value:
    return context.subject.studyid


@derivation("usubjid")
def _usubjid(context: RecordContext) -> Value:
    """STUDYID-SUBJID: unique across studies."""
    return context.subject.usubjid


@derivation("subjid")
def _subjid(context: RecordContext) -> Value:
    return context.subject.subjid


@derivation("siteid")
def _siteid(context: RecordContext) -> Value:
    return context.subject.siteid


@derivation("seq")
def _seq(context: RecordContext) -> Value:
    """--SEQ, numbered by the engine in the creation order of the source rows."""
    return float(context.seq)


@derivation("domain")
def _domain(context: RecordContext) -> Value:
    return context.domain


@derivation("dtc")
def dtc(context: RecordContext, date: str, time: str | None = None) -> Value:
    """ISO 8601 --DTC from a date (or partial date, or datetime) item and an optional time
    item: partial dates stay partial, and a time joins only a complete date."""
    day = context.item(date)
    if day is None:
        return None
    moment = context.item(time) if time else None
    if moment and len(day) == 10:
        return f"{day}T{moment}"
    return day


@derivation("date_part")
def _date_part(context: RecordContext, item: str) -> Value:
    """The date of a datetime item (ISO 8601 YYYY-MM-DD), partial dates unchanged."""
    value = context.item(item)
    return value[:10] if value else None


@derivation("anchor")
def _anchor(context: RecordContext, anchor: str, when: str | None = None) -> Value:
    """A subject's anchor date/time (consent, leukapheresis, infusion) as collected; with
    `when`, only in records where that variable has a value (VSRFTDTC where VSTPTREF is)."""
    if when is not None and context.variable(when) is None:
        return None
    return context.data.anchors.get(anchor)


@derivation("decode")
def _decode(context: RecordContext, item: str, codelist: str) -> Value:
    """The study code list's decode of a collected code (e.g. a --TEST from a --TESTCD)."""
    code = context.item(item)
    return None if code is None else context.study.codelists[codelist].decode(code)


def day_of(dtc_value: str | None) -> date | None:
    """The calendar date of a complete ISO 8601 date or datetime; None when partial."""
    if dtc_value is None or len(dtc_value) < 10:
        return None
    return date.fromisoformat(dtc_value[:10])


def sdtm_day(day: date, reference: date) -> int:
    """SDTM study day: reference day is 1, the day before is -1; there is no day 0."""
    delta = (day - reference).days
    return delta + 1 if delta >= 0 else delta


@derivation("study_day")
def study_day(context: RecordContext, dtc: str) -> Value:
    """--DY of the variable `dtc` of this record from RFSTDTC; only for complete dates."""
    day = day_of(context.date_variable(dtc))
    # DM is built before the other domains and reads its own RFSTDTC.
    reference = day_of(context.reference_start or context.date_variable(REFERENCE_START))
    return None if day is None or reference is None else float(sdtm_day(day, reference))


@derivation("transposed")
def _transposed(context: RecordContext, key: str) -> Value:
    """A value of the record's transposition entry (`values: {KEY: ...}`)."""
    return context.transposed_values.get(key)


@derivation("transposed_result")
def _transposed_result(context: RecordContext) -> Value:
    """The collected value of the record's transposition item."""
    return context.item(context.transposed_item) if context.transposed_item else None


def visit_number(visit: Visit, repeat: int) -> float:
    """VISITNUM: the schedule's number; repeats of a repeating visit add hundredths
    (unscheduled visits count from .01: 99.01, 99.02; repeating scheduled visits keep the
    number for their first occurrence: 21, 21.01)."""
    if not visit.repeating:
        return visit.visitnum
    extra = repeat if visit.type == "unscheduled" else repeat - 1
    return round(visit.visitnum + extra / 100, 2)


def visit_name(visit: Visit, repeat: int) -> str:
    """VISIT: the schedule's name, numbered for repeats (Unscheduled 1, Long-term 2)."""
    if visit.repeating and (visit.type == "unscheduled" or repeat > 1):
        return f"{visit.name} {repeat}"
    return visit.name


@derivation("visitnum")
def _visitnum(context: RecordContext) -> Value:
    """VISITNUM of a record from a visit form; None for log forms."""
    row = context.row
    visit = None if row is None else context.study.visit(row.event_oid)
    return None if row is None or visit is None else visit_number(visit, row.event_repeat)


@derivation("visit")
def _visit(context: RecordContext) -> Value:
    """VISIT of a record from a visit form; None for log forms."""
    row = context.row
    visit = None if row is None else context.study.visit(row.event_oid)
    return None if row is None or visit is None else visit_name(visit, row.event_repeat)


@derivation("visit_date")
def _visit_date(context: RecordContext, form: str | None = None) -> Value:
    """Date of the visit of the record's source row, or (with `form`, a form name) of the
    visit where the subject's first such form was entered."""
    rows = context.data.rows_of(form) if form else [context.row] if context.row else []
    dates = [row.visit_date for row in rows if row.visit_date]
    return dates[0].isoformat() if dates else None


@derivation("per_form")
def _per_form(
    context: RecordContext,
    values: Mapping[str, str] | None = None,
    items: Mapping[str, str] | None = None,
) -> Value:
    """A value that depends on the record's source form (by name), for domains fed by
    several forms: the constant `values[form]`, or the row's item `items[form]`."""
    form = context.row.form_name if context.row else ""
    if items and form in items:
        return context.item(items[form])
    return (values or {}).get(form)


@derivation("when_item")
def _when_item(context: RecordContext, item: str, value: str) -> Value:
    """`value` when `item` has a value (e.g. AGEU when AGE is known), else null."""
    return value if context.item(item) is not None else None

"""Named derivations of the AE, EX, LB, VS, CM and MH mappings, registered into
`app.sdtm.derive` with `@derivation("name")` on import.

Their arguments are data written in the mappings (`exports/*.yaml`): item names, per-form
sources, the unit conversion table of LB. Every derivation reads one subject's collected rows
(`context.data`); what a derivation needs from all of them (the header values of each saved
form, the last result before exposure of each test) is computed once per subject and kept
while that subject's records are built (`per_subject`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.numbers import plain_text, round_half_up
from app.sdtm.derive import (
    RecordContext,
    RowValues,
    SubjectData,
    Value,
    day_of,
    derivation,
    per_subject,
    registered_derivations,
)

FormKey = tuple[str, str, int, int]
"""A saved form: (form OID, StudyEvent OID, event repeat, form repeat)."""


@per_subject
def _subject_memo(data: SubjectData) -> dict[tuple[object, ...], Any]:
    """Results computed once per subject and reused by its records (keyed by what they
    depend on)."""
    return {}


def _form_key(row: RowValues) -> FormKey:
    return row.form_oid, row.event_oid, row.event_repeat, row.form_repeat


@per_subject
def _form_headers(data: SubjectData) -> dict[FormKey, dict[str, str]]:
    """Values of the non-repeating item groups of each saved form (e.g. a lab panel's sample
    date, time and laboratory), which the rows of its repeating groups share."""
    single = {
        group.oid
        for form in data.study.forms.values()
        for group in form.item_groups
        if not group.repeating
    }
    headers: dict[FormKey, dict[str, str]] = {}
    for row in data.rows:
        if row.item_group_oid in single:
            headers.setdefault(_form_key(row), {}).update(row.values)
    return headers


def first_value(
    context: RecordContext, items: Sequence[str], row: RowValues | None = None
) -> str | None:
    """The first of `items` the record's row (or `row`) has a value for, else the first its
    saved form's non-repeating groups have (a lab row's sample date and time)."""
    row = row or context.row
    if row is None:
        return None
    for item in items:
        if (value := row.values.get(item)) is not None:
            return value
    header = _form_headers(context.data).get(_form_key(row))
    return next((value for item in items if (value := header.get(item))), None) if header else None


def row_value(context: RecordContext, item: str, row: RowValues | None = None) -> str | None:
    """`item` of the record's row (or `row`), else of its saved form's non-repeating groups."""
    return first_value(context, (item,), row)


def _dtc(date: str | None, time: str | None) -> str | None:
    """ISO 8601 date/time: partial dates stay partial; a time joins only a complete date."""
    if date is None:
        return None
    return f"{date}T{time}" if time and len(date) == 10 else date


# -- general-purpose row readers ---------------------------------------------------------------


@derivation("form_value")
def _form_value(context: RecordContext, item: str) -> Value:
    """`item` of the record's row or of its form's non-repeating groups (e.g. LBNAM of a lab
    panel, entered once for all its result rows)."""
    return row_value(context, item)


@derivation("form_dtc")
def _form_dtc(context: RecordContext, date: str, time: str | None = None) -> Value:
    """ISO 8601 --DTC from a date item and an optional time item of the record's row or of its
    form's non-repeating groups (a lab row's sample date and time)."""
    return _dtc(row_value(context, date), row_value(context, time) if time else None)


@derivation("first_of")
def _first_of(
    context: RecordContext, items: Sequence[str], map: Mapping[str, str | None] | None = None
) -> Value:
    """The first of `items` the record's row (or its form) has a value for, recoded by `map`
    when given (a code missing from `map` stays as collected; `null` drops it). For domains fed
    by forms that do not all have the same items (LB panels, VS and HTWT)."""
    value = first_value(context, items)
    if value is not None and map is not None:
        return map.get(value, value)
    return value


@derivation("by_source")
def _by_source(context: RecordContext, **forms: Mapping[str, Any]) -> Value:
    """A value taken differently from each source form (keyed by form name), for domains fed
    by several forms (EX from EX and LD, CM from CM and SLEHX). Each form's entry has one of
    `constant` or `item` (the row's item; `specify` names the item holding the text of an
    OTHER code, `map` recodes codes, a code missing from it stays as collected), and an
    optional `when: {ITEM: value}` that must hold on the row. A form without an entry gives
    null."""
    row = context.row
    entry = forms.get(row.form_name) if row is not None else None
    if entry is None:
        return None
    for item, wanted in entry.get("when", {}).items():
        if row_value(context, item) != wanted:
            return None
    if "constant" in entry:
        constant: Value = entry["constant"]
        return constant
    value = row_value(context, entry["item"])
    if value == "OTHER" and "specify" in entry:
        return row_value(context, entry["specify"])
    recode: Mapping[str, str | None] = entry.get("map", {})
    return recode.get(value, value) if value is not None else None


@derivation("collection_date")
def _collection_date(context: RecordContext) -> Value:
    """Date of the visit the record's form was entered at (--DTC of history collected at
    screening)."""
    row = context.row
    return row.visit_date.isoformat() if row is not None and row.visit_date else None


@derivation("epoch_of_start")
def _epoch_of_start(context: RecordContext, dtc: str) -> Value:
    """EPOCH of an intervention from its start date (variable `dtc`) alone: null while that
    date is partial, instead of the epoch of the visit it was recorded at (a prior therapy
    started in 2015-03 and recorded at screening belongs to no study epoch)."""
    if day_of(context.date_variable(dtc)) is None:
        return None
    return registered_derivations()["epoch"](context, dtc=dtc)


@derivation("any_chosen")
def _any_chosen(context: RecordContext, item: str, ignore: Sequence[str] = ()) -> Value:
    """Y when the multichoice `item` (codes stored comma-separated) has a code other than the
    `ignore` ones (e.g. NONE), N when it has only those, null when unanswered (AECONTRT from
    the treatments given for an AE)."""
    value = row_value(context, item)
    if value is None:
        return None
    return "Y" if any(code not in ignore for code in value.split(",")) else "N"


# -- AE: links from the CRS, ICANS and DLT forms ---------------------------------------------


def _linked_episodes(
    context: RecordContext, ae_id: str, episodes: Iterable[Mapping[str, str]]
) -> list[tuple[Mapping[str, str], RowValues]]:
    """(episode entry, episode row) of every event form that cites the record's AE number:
    `episodes` lists `{form: CRS, link: CRSAEID, ...}`."""
    number = row_value(context, ae_id)
    if number is None:
        return []
    return [
        (episode, row)
        for episode in episodes
        for row in context.data.rows_of(episode["form"])
        if _same_id(row.values.get(episode["link"]), number)
    ]


def _same_id(cited: str | None, number: str) -> bool:
    return cited is not None and cited.strip().upper() == number.strip().upper()


@derivation("episode_grade")
def _episode_grade(
    context: RecordContext, ae_id: str, grade: str, episodes: Sequence[Mapping[str, str]]
) -> Value:
    """AETOXGR: for an AE cited by CRS or ICANS episode forms, the highest derived ASTCT grade
    of those episodes (EC053: the AE grade equals the episode grade); otherwise, or while no
    episode grade is derived, the AE log's grade `grade`."""
    grades = [
        int(float(value))
        for episode, row in _linked_episodes(context, ae_id, episodes)
        if (value := row.values.get(episode["grade"])) is not None
    ]
    best = max(grades, default=0)
    return str(best) if best >= 1 else row_value(context, grade)


@derivation("episode_term")
def _episode_term(
    context: RecordContext, term: str, ae_id: str, episodes: Sequence[Mapping[str, str]]
) -> Value:
    """AEDECOD: the MedDRA preferred term of the CRS or ICANS episode form citing the AE
    (`{form, link, term}`); other AEs keep their verbatim term `term` until MedDRA coding."""
    linked = _linked_episodes(context, ae_id, episodes)
    return linked[0][0]["term"] if linked else row_value(context, term)


@derivation("dlt_flag")
def _dlt_flag(
    context: RecordContext, ae_id: str, flag: str, dlt_ids: str, dlt_occurred: str
) -> Value:
    """Whether the AE is a dose-limiting toxicity: Y when the investigator flagged it (`flag`)
    or the DLT assessment cites its AE number (`dlt_ids`, numbers separated by commas or
    spaces) with a DLT occurred (`dlt_occurred` = Y); else the flag as collected (N, or null
    when the question was not asked: onset outside D0-D28)."""
    collected = row_value(context, flag)
    number = row_value(context, ae_id)
    cited = context.data.first(dlt_ids) or ""
    if context.data.first(dlt_occurred) == "Y" and number is not None:
        if any(_same_id(part, number) for part in re.split(r"[\s,;]+", cited) if part):
            return "Y"
    return collected


# -- LB: test codes, standard units, last observation before exposure --------------------------


@dataclass(frozen=True)
class _Conversion:
    test: str
    unit: str
    standard: str
    factor: float

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> _Conversion:
        factor = float(entry["factor"]) if "factor" in entry else 1 / float(entry["divisor"])
        return cls(entry["test"], entry["from"], entry["to"], factor)


_CONVERSION_TABLES: dict[int, tuple[object, dict[tuple[str, str], _Conversion]]] = {}
"""Parsed conversion tables, by identity of the mapping's list (parsed once per export)."""


def _conversion(
    conversions: Sequence[Mapping[str, Any]], test: str | None, unit: str | None
) -> _Conversion | None:
    """The conversion of `test` results in `unit`, from the mapping's conversion table."""
    cached = _CONVERSION_TABLES.get(id(conversions))
    if cached is None or cached[0] is not conversions:
        table = {(c.test, c.unit): c for c in map(_Conversion.of, conversions)}
        cached = _CONVERSION_TABLES[id(conversions)] = (conversions, table)
    return cached[1].get((test or "", unit or ""))


@derivation("lab_test")
def _lab_test(
    context: RecordContext, part: str, renames: Sequence[Mapping[str, str]] = ()
) -> Value:
    """LBTESTCD (`part: code`) or LBTEST (`part: name`) of a lab row: the row's own, unless
    `renames` maps its test code in a given unit to another test (`{test: UREA, unit: mg/dL,
    testcd: BUN, name: Urea Nitrogen}`: labs reporting blood urea nitrogen use the urea row)."""
    code, unit = row_value(context, "LBTESTCD"), row_value(context, "LBORRESU")
    for rename in renames:
        if rename["test"] == code and rename["unit"] == unit:
            return rename["testcd"] if part == "code" else rename["name"]
    return code if part == "code" else row_value(context, "LBTEST")


def _format_number(value: float, original: str) -> str:
    """A converted result as plain decimal text with the precision of the `original` result:
    as many significant digits, rounded half up, but never rounding whole units away (83
    mg/dL of glucose / 18 is "4.6" mmol/L, not 4.611111; 1.2 mg/dL of creatinine x 88.4 is
    "106" umol/L; 42 % of haematocrit x 0.01 is "0.42" L/L)."""
    digits = len(Decimal(original).as_tuple().digits)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    return plain_text(round_half_up(value, max(0, digits - 1 - magnitude)))


def _to_number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@derivation("lab_standard")
def _lab_standard(
    context: RecordContext, part: str, conversions: Sequence[Mapping[str, Any]]
) -> Value:
    """Standard result of a lab record from its variables LBTESTCD, LBORRES, LBORRESU,
    LBORNRLO and LBORNRHI: `part` is STRESC, STRESN, STRESU, STNRLO or STNRHI. A numeric result in a unit listed in `conversions` (`{test, from, to, factor}` or
    `divisor`: spec §6.9) is multiplied into the standard unit, with the precision of the
    collected value (`_format_number`); other results keep their unit.
    Character results (titres, positive/negative) are copied to LBSTRESC only."""
    test, unit = context.variable("LBTESTCD"), context.variable("LBORRESU")
    conversion = _conversion(conversions, test if isinstance(test, str) else None,
                             unit if isinstance(unit, str) else None)  # fmt: skip
    if part == "STRESU":
        return conversion.standard if conversion else unit
    source = {"STRESC": "LBORRES", "STRESN": "LBORRES", "STNRLO": "LBORNRLO",
              "STNRHI": "LBORNRHI"}[part]  # fmt: skip
    original = context.variable(source)
    number = _to_number(original if isinstance(original, str) else None)
    if number is None:
        return original if part == "STRESC" else None
    if conversion is None:
        return original if part == "STRESC" else number
    assert isinstance(original, str)  # a number was read from it
    converted = _format_number(number * conversion.factor, original)
    return converted if part == "STRESC" else float(converted)


def _moment(row: RowValues, context: RecordContext, date: Sequence[str],
            time: Sequence[str]) -> str | None:  # fmt: skip
    """The ISO 8601 date/time of a row from the first of its `date` and `time` items."""
    day, clock = first_value(context, date, row), first_value(context, time, row)
    return _dtc(day, clock)


def _before_exposure(moment: str | None, exposure: str | None) -> bool:
    """Whether an observation at `moment` was taken before the first exposure: an earlier
    day, or the same day at or before the exposure time, or the same day without a time (a
    pre-dose sample of the infusion visit). Partial dates do not count."""
    if moment is None or exposure is None or len(moment) < 10:
        return False
    if moment[:10] != exposure[:10]:
        return moment[:10] < exposure[:10]
    return len(moment) <= 10 or len(exposure) <= 10 or moment[11:16] <= exposure[11:16]


def _observed_test(
    row: RowValues, item: str | None, test: str | None, results: Sequence[str]
) -> str | None:
    """The test a row gives a result for: the transposed `item` when the row has a value for
    it; else the row's `test` item (LBTESTCD) when one of `results` has a value."""
    if item is not None:
        return item if row.values.get(item) is not None else None
    if any(row.values.get(result) is not None for result in results):
        return row.values.get(test or "")
    return None


@derivation("last_before_exposure")
def _last_before_exposure(
    context: RecordContext,
    date: Sequence[str],
    time: Sequence[str] = (),
    test: str | None = None,
    results: Sequence[str] = (),
) -> Value:
    """--LOBXFL: Y on the last observation of a test before the first exposure (RFSTDTC, the
    ZM001 infusion), else null. The observations of a test are the rows of the record's form
    and item group: for a transposed record (VS), those with a value for its item; otherwise
    those with the same `test` item value (LBTESTCD) and a value for one of `results`. Rows
    are timed by the first of their `date` and `time` items; ties go to the later entered row.
    The last observation of every test of the form is found in one pass per subject."""
    row, exposure = context.row, context.reference_start
    # a transposition item is ITEM or FORM.ITEM of the row's form
    item = context.transposed_item.split(".")[-1] if context.transposed_item else None
    observed = None if row is None else _observed_test(row, item, test, results)
    if row is None or exposure is None or observed is None:
        return None
    key = ("last_before_exposure", row.form_name, row.item_group_oid, item, test, tuple(date),
           tuple(time), tuple(results))  # fmt: skip
    memo = _subject_memo(context.data)
    if key not in memo:
        latest: dict[str, tuple[str, int]] = {}
        for other in context.data.rows_of(row.form_name):
            if other.item_group_oid != row.item_group_oid:
                continue
            name = _observed_test(other, item, test, results)
            moment = None if name is None else _moment(other, context, date, time)
            if name is None or moment is None or not _before_exposure(moment, exposure):
                continue
            latest[name] = max(latest.get(name, (moment, other.order)), (moment, other.order))
        memo[key] = {name: order for name, (_when, order) in latest.items()}
    last: dict[str, int] = memo[key]
    return "Y" if last.get(observed) == row.order else None


@derivation("transposed_extra")
def _transposed_extra(context: RecordContext, test: str, item: str) -> Value:
    """`item` of the source row for the transposed record of test code `test` only (e.g. the
    supplemental oxygen of the SpO2 record), null for the row's other records."""
    codes = context.transposed_values.values()
    return row_value(context, item) if test in codes else None

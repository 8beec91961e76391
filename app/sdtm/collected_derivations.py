"""Named derivations of the CE, FA, PR, DD, EG and product (ZP) mappings, registered into
`app.sdtm.derive` with `@derivation("name")` on import: the identity of an episode form, an
ongoing flag, a numeric result of a findings transposition, and --DTC taken differently from
each source form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.sdtm.derive import RecordContext, Value, derivation
from app.sdtm.domain_derivations import first_value


@derivation("form_instance")
def _form_instance(context: RecordContext) -> Value:
    """The saved form a record comes from, as its name and repeat number (`CRS-2`: the
    subject's second CRS episode form): the same for every record of that form, so it relates
    an event (CESPID) to the findings about it (FAGRPID)."""
    row = context.row
    return None if row is None else f"{row.form_name}-{row.form_repeat}"


@derivation("when_missing")
def _when_missing(context: RecordContext, items: Sequence[str], value: str) -> Value:
    """`value` when none of `items` has a value on the record's row or its form (an episode
    without a resolution date is ONGOING), else null."""
    return value if first_value(context, items) is None else None


@derivation("numeric_result")
def _numeric_result(context: RecordContext) -> Value:
    """The collected value of the record's transposition item as a number (--STRESN); null
    for a code or text (Y, NONE, ALERT)."""
    item = context.transposed_item
    text = context.item(item) if item else None
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@derivation("dtc_by_source")
def _dtc_by_source(context: RecordContext, **forms: Mapping[str, str]) -> Value:
    """ISO 8601 --DTC from the `date` item and optional `time` item of the record's source
    form (keyed by form name: `APH: {date: APHDAT, time: APHSTTM}`), read from its row or its
    form's non-repeating groups; partial dates stay partial and a time joins only a complete
    date. A form without an entry gives null."""
    entry = forms.get(context.row.form_name) if context.row is not None else None
    if entry is None:
        return None
    day = first_value(context, (entry["date"],))
    moment = first_value(context, (entry["time"],)) if "time" in entry else None
    if day is None:
        return None
    return f"{day}T{moment}" if moment and len(day) == 10 else day


@derivation("result_map")
def _result_map(
    context: RecordContext, map: Mapping[str, str | None], keep_unmapped: bool = True
) -> Value:
    """The collected value of the record's transposition item recoded by `map` (an ECG
    interpretation ABNORMAL CS is ABNORMAL in --STRESC and Y in --CLSIG); a value missing from
    `map` stays as collected, or is null without `keep_unmapped`."""
    item = context.transposed_item
    text = context.item(item) if item else None
    if text is None:
        return None
    return map[text] if text in map else (text if keep_unmapped else None)

"""Typed values: what a site may type for each data type, and the message when it may not."""

from __future__ import annotations

from datetime import date

import pytest

from app.crf.values import (
    DateLimits,
    InvalidValue,
    Parsed,
    derived_value,
    parse_value,
    shown_text,
)
from app.study.model import CodeList, CodeListItem, DataType, ItemDef, Range

YN = CodeList(oid="CL.NY", name="NY", items=(CodeListItem(code="Y", decode="Yes"),
                                                CodeListItem(code="N", decode="No")))  # fmt: skip


def item(kind: DataType, **extra: object) -> ItemDef:
    codelist = "CL.NY" if kind in (DataType.CHOICE, DataType.MULTICHOICE) else None
    return ItemDef(oid="IT.X", name="X", label="X", type=kind, codelist=codelist, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        (DataType.INTEGER, " 42 ", "42"),
        (DataType.INTEGER, "-3", "-3"),
        (DataType.FLOAT, "7.10", "7.10"),
        (DataType.FLOAT, "0.50", "0.50"),
        (DataType.FLOAT, "150000", "150000"),
        (DataType.DATE, "2024-02-29", "2024-02-29"),
        (DataType.PARTIAL_DATE, "2019-UNK-UNK", "2019"),
        (DataType.PARTIAL_DATE, "2019-07-unk", "2019-07"),
        (DataType.PARTIAL_DATE, "2019-07-04", "2019-07-04"),
        (DataType.DATETIME, "2026-04-10T10:05", "2026-04-10T10:05:00"),
        (DataType.TIME, "08:30", "08:30:00"),
        (DataType.BOOLEAN, "yes", "true"),
        (DataType.CHOICE, "Y", "Y"),
        (DataType.MULTICHOICE, "N,Y,N", "Y,N"),
        (DataType.TEXT, "<b>as typed</b>", "<b>as typed</b>"),
        (DataType.TEXT, "   ", None),
    ],
)
def test_accepted_values_are_stored_in_canonical_form(
    kind: DataType, typed: str, stored: str | None
) -> None:
    assert parse_value(item(kind), typed, YN).value == stored


@pytest.mark.parametrize(
    ("kind", "extra", "typed", "message"),
    [
        (DataType.INTEGER, {}, "12.5", "'12.5' is not a whole number: give a whole number"),
        (DataType.INTEGER, {}, "twelve", "'twelve' is not a whole number"),
        (DataType.INTEGER, {}, "042", "leave out the leading zeros"),
        (DataType.INTEGER, {}, "1,500", "leave out the thousands separators"),
        (DataType.FLOAT, {}, "1e5", "'1e5' is not a plain number"),
        (DataType.FLOAT, {}, "150,000", "'150,000' is not a plain number: leave out the thousands"),
        (DataType.FLOAT, {}, "1,500", "leave out the thousands separators"),
        (DataType.FLOAT, {}, "1 500", "leave out the thousands separators"),
        (DataType.FLOAT, {}, "36,6", "use a point, not a comma, before the decimals"),
        (DataType.FLOAT, {}, ".5", "'.5' is not a plain number"),
        (DataType.FLOAT, {}, "+7.1", "leave out the plus sign"),
        (DataType.FLOAT, {"decimals": 1}, "2.25", "2.25 has 2 decimal places; at most 1 allowed"),
        (
            DataType.FLOAT,
            {"hard_range": Range(min=30, max=43)},
            "45",
            "45 is outside the allowed range (30 to 43)",
        ),
        (DataType.DATE, {}, "2023-02-29", "2023-02-29 is not a real calendar date"),
        (DataType.DATE, {}, "2023-02", "a partial date is not allowed"),
        (DataType.DATE, {}, "29/02/2024", "is not a date in the form YYYY-MM-DD"),
        (DataType.PARTIAL_DATE, {}, "2019-UNK-04", "a day is given but the month is unknown"),
        (DataType.PARTIAL_DATE, {}, "2019-13", "13 is not a month"),
        (DataType.DATETIME, {}, "2026-04-10T25:00", "is not a real date and time"),
        (DataType.TIME, {}, "8h30", "is not a time"),
        (DataType.CHOICE, {}, "Maybe", "'Maybe' is not one of the allowed answers"),
        (DataType.TEXT, {"length": 5}, "too long", "is 8 characters long; at most 5 are allowed"),
    ],
)
def test_refused_values_say_what_is_wrong(
    kind: DataType, extra: dict[str, object], typed: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_value(item(kind, **extra), typed, YN)


def test_a_value_outside_the_soft_range_is_accepted_and_flagged() -> None:
    parsed = parse_value(item(DataType.INTEGER, soft_range=Range(min=90, max=160)), "85", YN)
    assert parsed.value == "85"
    assert parsed.flag == "85 is outside the expected range (90 to 160); please confirm"


TODAY = date(2026, 12, 2)
LIMITS = DateLimits(date(1900, 1, 1), TODAY)


@pytest.mark.parametrize(
    ("kind", "extra", "typed", "message"),
    [
        (DataType.DATE, {}, "9999-12-31", "is after today (2026-12-02 at the site)"),
        (DataType.DATE, {}, "1800-01-01", "is before 1900-01-01, the earliest date"),
        (DataType.PARTIAL_DATE, {}, "2027", "2027 is after today"),
        (DataType.DATETIME, {}, "2026-12-03T00:10", "is after today"),
    ],
)
def test_implausible_dates_are_refused(
    kind: DataType, extra: dict[str, object], typed: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_value(item(kind, **extra), typed, YN, LIMITS)


def test_a_date_after_today_is_flagged_or_allowed_as_the_item_says() -> None:
    flagged = parse_value(item(DataType.DATE, future="flag"), "2026-12-24", YN, LIMITS)
    assert flagged == Parsed(
        "2026-12-24", "2026-12-24 is after today (2026-12-02 at the site); please confirm"
    )
    assert parse_value(item(DataType.DATE, future="allow"), "2026-12-24", YN, LIMITS).flag is None
    assert parse_value(item(DataType.DATE), "2026-12-02", YN, LIMITS).value == "2026-12-02"


@pytest.mark.parametrize(
    ("result", "decimals", "stored"),
    [(22.45, 1, "22.5"), (2.675, 2, "2.68"), (-22.45, 1, "-22.5"), (0.5, 0, "1"), (2.5, 0, "3"),
     (1.0000001, 4, "1"), (float("inf"), 1, None)],
)  # fmt: skip
def test_derived_numbers_round_half_up_as_sas_does(
    result: float, decimals: int, stored: str | None
) -> None:
    kind = DataType.INTEGER if decimals == 0 else DataType.FLOAT
    derived = item(kind, derivation="1.0", decimals=decimals if decimals else None)
    assert derived_value(derived, result) == stored


@pytest.mark.parametrize(
    ("kind", "stored", "shown"),
    [
        (DataType.DATE, "2025-06-15", "2025-06-15"),
        (DataType.DATETIME, "2025-06-15T14:30:00", "2025-06-15 14:30"),
        (DataType.DATETIME, "2025-06-15T14:30:07", "2025-06-15 14:30:07"),
        (DataType.TIME, "08:00:00", "08:00"),
        (DataType.PARTIAL_DATE, "2025-06", "2025-06-UNK"),
        (DataType.PARTIAL_DATE, "2025", "2025-UNK-UNK"),
        (DataType.PARTIAL_DATE, "2025-06-15", "2025-06-15"),
        (DataType.DATETIME, "07/04/2025", "07/04/2025"),  # as typed, on a refused form
    ],
)
def test_pages_show_stored_dates_in_iso_as_they_are_typed_back(
    kind: DataType, stored: str, shown: str
) -> None:
    assert shown_text(item(kind), stored) == shown
    if shown != stored and "/" not in shown:
        assert parse_value(item(kind), shown, None).value == stored

"""Typed values: what a site may type for each data type, and the message when it may not."""

from __future__ import annotations

import pytest

from app.crf.values import InvalidValue, parse_value
from app.study.model import CodeList, CodeListItem, DataType, ItemDef, Range

YN = CodeList(oid="CL.NY", name="NY", items=(CodeListItem(code="Y", decode="Yes"),
                                                CodeListItem(code="N", decode="No")))  # fmt: skip


def item(kind: DataType, **extra: object) -> ItemDef:
    codelist = "CL.NY" if kind in (DataType.CHOICE, DataType.MULTICHOICE) else None
    return ItemDef(oid="IT.X", name="X", label="X", type=kind, codelist=codelist, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        (DataType.INTEGER, " 042 ", "42"),
        (DataType.FLOAT, "36,6", "36.6"),
        (DataType.FLOAT, "1.50", "1.5"),
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
        (DataType.INTEGER, {}, "12.5", "'12.5' is not a whole number"),
        (DataType.INTEGER, {}, "twelve", "'twelve' is not a whole number"),
        (DataType.FLOAT, {}, "1e5", "'1e5' is not a number"),
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

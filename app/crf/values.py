"""Checking what a user typed for an item and turning it into the stored text, and back into
a value for expressions.

A number is stored exactly as typed once it is a plain number in the study's notation (digits,
a point before any decimals, a leading minus; "7.10" stays "7.10", as SDTM --ORRES wants it);
anything else (a thousands separator, a decimal comma, an exponent) is refused with a message
saying how to type it, never reinterpreted. Other types are stored as ODM 1.3.2 carries them:
ISO 8601 dates, `hh:mm:ss` times, `YYYY-MM-DDThh:mm:ss` datetimes, `true`/`false`, codes; a
multiple choice is its codes joined by commas, in code list order.

Dates are checked against the calendar, the study's earliest plausible date, and (unless the
item allows it) today's date at the site.

Pages show a stored value as `shown_text` gives it, in the one convention users type: ISO 8601
dates (2025-06-15), date-times with a space and minutes (2025-06-15 14:30), times as 14:30, and
partial dates with UNK for what is unknown (2025-06-UNK, 2025-UNK-UNK); each parses back to
the same stored text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from math import isfinite
from typing import Any

from app.numbers import plain_text, round_half_up
from app.study.model import CodeList, DataType, FutureDates, ItemDef

DERIVED_DECIMALS = 4
"""Decimals of a derived number whose item sets none."""
MAX_TEXT_LENGTH = 4000
"""Longest text any item accepts when its definition sets no length (SDTM splits at 200)."""

PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}|UNK)(?:-(\d{2}|UNK))?)?$", re.IGNORECASE)
INTEGER = re.compile(r"-?(0|[1-9]\d{0,14})")
DECIMAL = re.compile(r"-?(0|[1-9]\d{0,14})(\.\d{1,15})?")
THOUSANDS = re.compile(r"-?\d{1,3}([, ]\d{3})+(\.\d+)?")
DATE_OR_PARTIAL = re.compile(r"\d{4}(-(\d{2}|UNK))?(-(\d{2}|UNK))?", re.IGNORECASE)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
TIME = re.compile(r"\d{2}:\d{2}(:\d{2})?")
STORED_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
STORED_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")


class InvalidValue(ValueError):
    """A typed value that does not fit its item; the message is shown next to the field."""


@dataclass(frozen=True)
class Parsed:
    """A parsed value: stored text (None when empty) and a message flagging it for review."""

    value: str | None
    flag: str | None = None


@dataclass(frozen=True)
class DateLimits:
    """What a plausible date is: not before `earliest` (the study's), not after `today` (the
    site's local date) unless the item allows it. `today` None skips the future check."""

    earliest: date
    today: date | None


NO_DATE_LIMITS = DateLimits(date.min, None)


def parse_value(
    item: ItemDef,
    raw: str | list[str] | None,
    codelist: CodeList | None,
    limits: DateLimits = NO_DATE_LIMITS,
) -> Parsed:
    """Stored text of `raw` for `item`; raises InvalidValue saying what is wrong.

    Hard ranges reject; soft ranges accept and return a flag; a date after today is refused
    or flagged as the item says.
    """
    if isinstance(raw, list):
        raw = ",".join(part.strip() for part in raw if part.strip())
    text = (raw or "").strip()
    if not text:
        return Parsed(None)
    parser = _PARSERS[item.type]
    value = parser(item, text, codelist)
    if item.type in _DATED:
        return Parsed(value, _date_flag(item, value, limits))
    return Parsed(value, _soft_range_flag(item, value))


def check_range(item: ItemDef, value: str | None) -> None:
    """Raise InvalidValue when a numeric value lies outside the item's hard range."""
    if value is None or item.hard_range is None:
        return
    number = float(value)
    if not item.hard_range.contains(number):
        raise InvalidValue(f"{value} is outside the allowed range ({item.hard_range.describe()})")


def _soft_range_flag(item: ItemDef, value: str | None) -> str | None:
    if value is None or item.soft_range is None:
        return None
    if item.soft_range.contains(float(value)):
        return None
    return f"{value} is outside the expected range ({item.soft_range.describe()}); please confirm"


def _text(item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    limit = item.length or MAX_TEXT_LENGTH
    if len(text) > limit:
        raise InvalidValue(f"is {len(text)} characters long; at most {limit} are allowed")
    return text


def _integer(item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    if not INTEGER.fullmatch(text):
        raise InvalidValue(f"{text!r} is not a whole number: {_how_to_type(text, whole=True)}")
    check_range(item, text)
    return text


def _float(item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    if not DECIMAL.fullmatch(text):
        raise InvalidValue(f"{text!r} is not a plain number: {_how_to_type(text, whole=False)}")
    places = len(text.partition(".")[2])
    if item.decimals is not None and places > item.decimals:
        raise InvalidValue(f"{text} has {places} decimal places; at most {item.decimals} allowed")
    check_range(item, text)
    return text


def _how_to_type(text: str, *, whole: bool) -> str:
    """What to type instead of `text`, naming what was wrong with it when that is clear."""
    if THOUSANDS.fullmatch(text):
        return "leave out the thousands separators (e.g. 150000)"
    if not whole and re.fullmatch(r"-?\d+,\d+", text):
        return "use a point, not a comma, before the decimals (e.g. 36.6)"
    if re.fullmatch(r"-?0\d+(\.\d+)?", text):
        return "leave out the leading zeros"
    if whole and re.fullmatch(r"-?\d+\.\d*", text):
        return "give a whole number, without decimals"
    if text[:1] == "+":
        return "leave out the plus sign (a minus sign for a negative number)"
    if whole:
        return "type digits only, e.g. 42 (a minus sign for a negative number)"
    return (
        "type digits with a point before any decimals, e.g. 7.10 (a minus sign for a negative "
        "number; no spaces, separators or exponents)"
    )


def _date(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    if DATE_OR_PARTIAL.fullmatch(text) and len(text) < 10:
        raise InvalidValue("must be a complete date (YYYY-MM-DD); a partial date is not allowed")
    if "UNK" in text.upper():
        raise InvalidValue("must be a complete date (YYYY-MM-DD); a partial date is not allowed")
    return calendar_date(text).isoformat()


def calendar_date(text: str) -> date:
    """The date `text` (YYYY-MM-DD) names; InvalidValue when it is not in that form or not in
    the calendar (2025-02-30)."""
    if not DATE.fullmatch(text):
        raise InvalidValue(f"{text!r} is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise InvalidValue(f"{text} is not a real calendar date") from error


def _partial_date(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    match = PARTIAL_DATE.match(text)
    if not match:
        raise InvalidValue(f"{text!r} is not a date (YYYY-MM-DD, YYYY-MM, YYYY or UNK for parts)")
    year, month, day = match.groups()
    month = None if month is None or month.upper() == "UNK" else month
    day = None if day is None or day.upper() == "UNK" else day
    if month is None and day is not None:
        raise InvalidValue("a day is given but the month is unknown")
    if day is not None:
        return calendar_date(f"{year}-{month}-{day}").isoformat()
    if month is not None:
        if not 1 <= int(month) <= 12:
            raise InvalidValue(f"{month} is not a month")
        return f"{year}-{month}"
    return year


def _datetime(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    normalised = text.replace(" ", "T")
    if not DATETIME.fullmatch(normalised):
        raise InvalidValue(f"{text!r} is not a date and time (YYYY-MM-DD hh:mm)")
    try:
        moment = datetime.fromisoformat(normalised)
    except ValueError as error:
        raise InvalidValue(f"{text} is not a real date and time") from error
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _time(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    if not TIME.fullmatch(text):
        raise InvalidValue(f"{text!r} is not a time (hh:mm)")
    try:
        return time.fromisoformat(text).strftime("%H:%M:%S")
    except ValueError as error:
        raise InvalidValue(f"{text} is not a real time of day") from error


def _boolean(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return "true"
    if lowered in ("false", "0", "no", "off"):
        return "false"
    raise InvalidValue(f"{text!r} is not yes or no")


def _choice(_item: ItemDef, text: str, codelist: CodeList | None) -> str:
    assert codelist is not None
    if text not in codelist.codes:
        raise InvalidValue(f"{text!r} is not one of the allowed answers")
    return text


def _multichoice(item: ItemDef, text: str, codelist: CodeList | None) -> str:
    codes = [part.strip() for part in text.split(",") if part.strip()]
    for code in codes:
        _choice(item, code, codelist)
    assert codelist is not None
    ordered = [code for code in codelist.codes if code in codes]  # codelist order, no repeats
    return ",".join(ordered)


_DATED = (DataType.DATE, DataType.PARTIAL_DATE, DataType.DATETIME)


def _date_flag(item: ItemDef, value: str, limits: DateLimits) -> str | None:
    """Refuse a date before the study's earliest plausible one; refuse or flag one after
    today as the item says. A partial date counts from its earliest possible day."""
    first = _earliest_day(value)
    if first < limits.earliest:
        raise InvalidValue(
            f"{value} is before {limits.earliest.isoformat()}, the earliest date this study accepts"
        )
    if limits.today is None or first <= limits.today or item.future == FutureDates.ALLOW:
        return None
    message = f"{value} is after today ({limits.today.isoformat()} at the site)"
    if item.future == FutureDates.REFUSE:
        raise InvalidValue(f"{message}: a date that has not happened yet cannot be recorded")
    return f"{message}; please confirm"


def _earliest_day(value: str) -> date:
    year, _, rest = value[:10].partition("-")
    month, _, day = rest.partition("-")
    return date(int(year), int(month or 1), int(day or 1))


_PARSERS = {
    DataType.TEXT: _text,
    DataType.INTEGER: _integer,
    DataType.FLOAT: _float,
    DataType.DATE: _date,
    DataType.PARTIAL_DATE: _partial_date,
    DataType.DATETIME: _datetime,
    DataType.TIME: _time,
    DataType.BOOLEAN: _boolean,
    DataType.CHOICE: _choice,
    DataType.MULTICHOICE: _multichoice,
}


def shown_text(item: ItemDef, value: str | None) -> str | None:
    """How a page shows (and a user would type) the stored `value` of `item`; a value not in
    its stored form (text as typed, on a refused form) is shown as it is."""
    if value is None:
        return None
    if item.type == DataType.DATETIME and STORED_DATETIME.fullmatch(value):
        return value.replace("T", " ").removesuffix(":00")
    if item.type == DataType.TIME and STORED_TIME.fullmatch(value):
        return value.removesuffix(":00")
    if item.type == DataType.PARTIAL_DATE and re.fullmatch(r"\d{4}(-\d{2})?", value):
        return value + "-UNK" * (2 - value.count("-"))
    return value


def expression_value(item: ItemDef, value: str | None) -> Any:
    """The CEL value of a stored canonical value (see app.expressions for the conventions)."""
    if value is None:
        return None
    if item.type in (DataType.INTEGER, DataType.FLOAT):
        return float(value)
    if item.type == DataType.BOOLEAN:
        return value == "true"
    if item.type == DataType.MULTICHOICE:
        return value.split(",")
    return value


def derived_value(item: ItemDef, result: Any) -> str | None:
    """Canonical text of a derivation's result for `item`; None when it gave no usable value."""
    if result is None:
        return None
    if isinstance(result, int | float) and not isinstance(result, bool):
        if not isfinite(result) or item.type not in (DataType.INTEGER, DataType.FLOAT):
            return None
        places = 0 if item.type == DataType.INTEGER else DERIVED_DECIMALS
        if item.decimals is not None:
            places = item.decimals
        return plain_text(round_half_up(result, places))
    if item.type == DataType.BOOLEAN and isinstance(result, bool):
        return "true" if result else "false"
    if item.type == DataType.MULTICHOICE and isinstance(result, list):
        return ",".join(str(code) for code in result) or None
    if isinstance(result, str):
        return result
    return None

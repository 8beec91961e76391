"""Parsing what a user typed into an item's canonical stored text, and back for expressions.

Canonical text is what ODM 1.3.2 carries for the item's DataType: integers without sign noise,
decimals without exponent, ISO 8601 dates, `hh:mm:ss` times, `YYYY-MM-DDThh:mm:ss` datetimes,
`true`/`false`, codes; a multiple choice is its codes joined by commas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from app.study.model import CodeList, DataType, ItemDef

MAX_TEXT_LENGTH = 4000
"""Longest text any item accepts when its definition sets no length (SDTM splits at 200)."""

PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}|UNK)(?:-(\d{2}|UNK))?)?$", re.IGNORECASE)
INTEGER = re.compile(r"[+-]?\d{1,15}")
DECIMAL = re.compile(r"[+-]?(\d{1,15}(\.\d*)?|\.\d+)")
DATE_OR_PARTIAL = re.compile(r"\d{4}(-(\d{2}|UNK))?(-(\d{2}|UNK))?", re.IGNORECASE)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
TIME = re.compile(r"\d{2}:\d{2}(:\d{2})?")


class InvalidValue(ValueError):
    """A typed value that does not fit its item; the message is shown next to the field."""


@dataclass(frozen=True)
class Parsed:
    """A parsed value: canonical text (None when empty) and a soft-range flag message."""

    value: str | None
    flag: str | None = None


def parse_value(item: ItemDef, raw: str | list[str] | None, codelist: CodeList | None) -> Parsed:
    """Canonical text of `raw` for `item`; raises InvalidValue saying what is wrong.

    Hard ranges reject; soft ranges accept and return a flag.
    """
    if isinstance(raw, list):
        raw = ",".join(part.strip() for part in raw if part.strip())
    text = (raw or "").strip()
    if not text:
        return Parsed(None)
    parser = _PARSERS[item.type]
    value = parser(item, text, codelist)
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
        raise InvalidValue(f"{text!r} is not a whole number")
    value = str(int(text))
    check_range(item, value)
    return value


def _float(item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    decimal_text = text.replace(",", ".")
    if not DECIMAL.fullmatch(decimal_text):
        raise InvalidValue(f"{text!r} is not a number")
    try:
        number = Decimal(decimal_text)
    except InvalidOperation as error:
        raise InvalidValue(f"{text!r} is not a number") from error
    places = -int(number.as_tuple().exponent)
    if item.decimals is not None and places > item.decimals:
        raise InvalidValue(f"{text} has {places} decimal places; at most {item.decimals} allowed")
    value = format(number.normalize(), "f") if number != 0 else "0"
    check_range(item, value)
    return value


def _date(_item: ItemDef, text: str, _codelist: CodeList | None) -> str:
    if DATE_OR_PARTIAL.fullmatch(text) and len(text) < 10:
        raise InvalidValue("must be a complete date (YYYY-MM-DD); a partial date is not allowed")
    if "UNK" in text.upper():
        raise InvalidValue("must be a complete date (YYYY-MM-DD); a partial date is not allowed")
    return _calendar_date(text).isoformat()


def _calendar_date(text: str) -> date:
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
        return _calendar_date(f"{year}-{month}-{day}").isoformat()
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
    if item.type == DataType.INTEGER and isinstance(result, int | float):
        return str(round(result))
    if item.type == DataType.FLOAT and isinstance(result, int | float):
        places = item.decimals if item.decimals is not None else 4
        number = Decimal(str(round(float(result), places)))
        return format(number.normalize(), "f") if number != 0 else "0"
    if item.type == DataType.BOOLEAN and isinstance(result, bool):
        return "true" if result else "false"
    if item.type == DataType.MULTICHOICE and isinstance(result, list):
        return ",".join(str(code) for code in result) or None
    if isinstance(result, str):
        return result
    return None

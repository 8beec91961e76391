"""Rounding and writing numbers, the one place derived values and converted results are
rounded.

Rounding is half away from zero at the decimal digits a person reads, as SAS `ROUND` does:
22.45 to one decimal is 22.5, although the binary double nearest 22.45 lies just below it
(Python's `round` gives 22.4, and rounds halves to even besides). The shortest decimal text of
the double (`repr`) is what was typed or computed as a person reads it, so rounding that text
decimally gives the expected result.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def round_half_up(value: float, places: int) -> Decimal:
    """`value` rounded to `places` decimals (0 for a whole number), halves away from zero."""
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def plain_text(number: Decimal) -> str:
    """A number as plain decimal text without exponent or trailing zeros ("106.08", "3")."""
    return "0" if number == 0 else format(number.normalize(), "f")

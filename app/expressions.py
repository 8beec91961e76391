"""The one home of expression evaluation: show-if conditions, derivations and checks are CEL.

CEL (Common Expression Language) is not Turing-complete, has no side effects and no access to
the host, so study authors' expressions are safe to run on the server. Values reach CEL as:
numbers as double (CEL does not mix int and double), dates, datetimes and times as ISO 8601
strings (partial dates too, e.g. "2020-05"), booleans as bool, single choices as the code,
multiple choices as a list of codes, a missing value as null, and a repeating item group as a
list of maps (one per row). Functions that CEL lacks are registered here (`FUNCTIONS`).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import ModuleType
from typing import Any

# cel/__init__ imports cel.cli, the REPL of `python -m cel` (typer, rich, prompt_toolkit,
# pygments: 0.1 s in the command line, 0.3 s without typer loaded), which TrialDesk never runs.
# A placeholder stands in for it while cel loads, then goes: `import cel.cli` still works.
_REPL = sys.modules.setdefault("cel.cli", ModuleType("cel.cli"))
import cel  # noqa: E402

if sys.modules.get("cel.cli") is _REPL and not hasattr(_REPL, "__file__"):
    del sys.modules["cel.cli"]

from app.numbers import round_half_up  # noqa: E402

MACRO_VARIABLE = re.compile(r"\.(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
"""The loop variable of a comprehension such as `rows.all(r, r.X == 'Y')`."""


class ExpressionError(Exception):
    """An expression that does not compile, or failed while evaluating."""


def _numbers(values: list[Any]) -> list[float]:
    return [float(value) for value in values if value is not None]


def _greatest(values: list[Any]) -> float | None:
    """Largest non-null number of a list, or null when there is none."""
    numbers = _numbers(values)
    return max(numbers) if numbers else None


def _least(values: list[Any]) -> float | None:
    numbers = _numbers(values)
    return min(numbers) if numbers else None


def _total(values: list[Any]) -> float:
    """Sum of the non-null numbers of a list."""
    return float(sum(_numbers(values)))


def _sqrt(value: float) -> float:
    return math.sqrt(value)


def _round_to(value: float, places: int) -> float:
    """`value` rounded half up to `places` decimals (`app.numbers`: 22.45 -> 22.5)."""
    return float(round_half_up(value, int(places)))


def _complete_date(text: Any) -> date | None:
    """The date of an ISO date or datetime string, or None when it is missing or partial."""
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _years_between(start: Any, end: Any) -> float | None:
    """Whole years from `start` to `end` (age at `end` of someone born on `start`)."""
    first, last = _complete_date(start), _complete_date(end)
    if first is None or last is None:
        return None
    before_birthday = (last.month, last.day) < (first.month, first.day)
    return float(last.year - first.year - (1 if before_birthday else 0))


def _days_between(start: Any, end: Any) -> float | None:
    """Days from the date of `start` to the date of `end` (end - start)."""
    first, last = _complete_date(start), _complete_date(end)
    if first is None or last is None:
        return None
    return float((last - first).days)


def _add_days(start: Any, days: float) -> str | None:
    """ISO date `days` after the date of `start`."""
    first = _complete_date(start)
    return None if first is None else (first + timedelta(days=int(days))).isoformat()


def _first(values: list[Any]) -> Any:
    """The first element of a list (a log form's first instance), or null when it is empty."""
    return values[0] if values else None


def _last(values: list[Any]) -> Any:
    return values[-1] if values else None


def _earliest(values: list[Any]) -> str | None:
    """The earliest of a list of ISO dates or datetimes, nulls left out; null if none."""
    texts = [value for value in values if isinstance(value, str)]
    return min(texts) if texts else None


def _latest(values: list[Any]) -> str | None:
    texts = [value for value in values if isinstance(value, str)]
    return max(texts) if texts else None


def _complete_datetime(text: Any) -> datetime | None:
    """The datetime of an ISO datetime string with a time, or None when it is missing, a date
    only, or partial."""
    if not isinstance(text, str) or len(text) < 16:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _minutes_between(start: Any, end: Any) -> float | None:
    """Minutes from the datetime `start` to the datetime `end` (end - start, negative when `end`
    is earlier); null unless both are datetimes with a time (edit checks EC019, EC027, EC029,
    EC035, EC036: thaw to infusion start, fever within 24 h)."""
    first, last = _complete_datetime(start), _complete_datetime(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds() / 60.0


def _hours_between(start: Any, end: Any) -> float | None:
    """Hours from the datetime `start` to the datetime `end`; null unless both have a time
    (edit check EC059: CRS grade 3 lasting over 72 h)."""
    minutes = _minutes_between(start, end)
    return None if minutes is None else minutes / 60.0


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "first": _first,
    "last": _last,
    "earliest": _earliest,
    "latest": _latest,
    "greatest": _greatest,
    "least": _least,
    "total": _total,
    "sqrt": _sqrt,
    "round_to": _round_to,
    "years_between": _years_between,
    "days_between": _days_between,
    "add_days": _add_days,
    "minutes_between": _minutes_between,
    "hours_between": _hours_between,
}


class Expression:
    """A compiled CEL expression and the top-level names it reads."""

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except ValueError as error:
            raise ExpressionError(str(error).split("\n")[0]) from error
        references = self._program.references()
        loop_variables = set(MACRO_VARIABLE.findall(source))
        self.variables: frozenset[str] = frozenset(references["variables"]) - loop_variables
        self.functions: frozenset[str] = frozenset(
            name for name in references["functions"] if name[0].isalpha()
        )  # operators are listed as `_+_`, `!_`, `@in`, `@not_strictly_false`
        # A Context (needed to register functions) costs more than most evaluations: expressions
        # that call none of ours run on a plain map of their variables.
        self._calls_ours = not self.functions.isdisjoint(FUNCTIONS)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Run the expression; raises ExpressionError on any evaluation failure."""
        values = dict(variables)
        arguments = (
            cel.Context(variables=values, functions=FUNCTIONS) if self._calls_ours else values
        )
        return self._execute(arguments)

    def bind(self, shared: Mapping[str, Any]) -> BoundExpression:
        """The expression with the variables that several evaluations share (the other rows
        of a form, its other forms), converted to CEL once instead of on each evaluation."""
        return BoundExpression(self, shared)

    def _execute(self, arguments: cel.Context | dict[str, Any]) -> Any:
        try:
            return self._program.execute(arguments)
        except Exception as error:  # cel raises TypeError, RuntimeError, KeyError, ...
            raise ExpressionError(f"{type(error).__name__}: {error}") from error


class BoundExpression:
    """An expression and a CEL context holding its shared variables (`Expression.bind`).
    Not thread-safe, like the context: one evaluation loop uses it, then drops it."""

    def __init__(self, expression: Expression, shared: Mapping[str, Any]) -> None:
        self._expression = expression
        functions = FUNCTIONS if expression._calls_ours else None
        self._context = cel.Context(variables=dict(shared), functions=functions)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """Run the expression with `variables` added to the shared ones (replacing those the
        previous evaluation added); raises ExpressionError on any evaluation failure."""
        for name, value in variables.items():
            self._context.add_variable(name, value)
        return self._expression._execute(self._context)


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Compile once per process; Expression objects are immutable and shareable."""
    return Expression(source)


BUILTIN_FUNCTIONS = frozenset(
    {
        "size", "has", "all", "exists", "exists_one", "map", "filter", "int", "uint", "double",
        "string", "bool", "type", "matches", "contains", "startsWith", "endsWith", "duration",
        "timestamp", "dyn", "bytes",
    }
)  # fmt: skip


def unknown_functions(expression: Expression) -> set[str]:
    """Functions an expression calls that neither CEL nor `FUNCTIONS` provides."""
    return set(expression.functions) - BUILTIN_FUNCTIONS - set(FUNCTIONS)

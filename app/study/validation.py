"""A definition file's schema errors as problems, and the part of the file that can still be
checked.

Pydantic reports a mistyped key twice: the unknown key, and the required key it was meant to
be as missing. `validation_problems` folds such a pair into one line ("unknown key 'lable'
(did you mean 'label'?)"). `salvage` then repairs what it safely can (a misspelt key renamed,
an unknown key dropped) and leaves out the list entries that still fail, so that the
whole-study checks run on the rest of the file instead of waiting for its schema errors to be
fixed. What was left out is named, so that problems which merely follow from it are dropped.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from app.study.problems import Loc, Problem, SourceFile

ModelT = TypeVar("ModelT", bound=BaseModel)

SALVAGE_ROUNDS = 10
"""Validations tried per file; each round removes at least one thing, so few are needed."""


@dataclass(frozen=True)
class _Misspelling:
    """An unknown key and the key of the model it is close to."""

    loc: Loc
    unknown: str
    meant: str | None


def validation_problems(
    source: SourceFile, model: type[BaseModel], data: Any, error: ValidationError
) -> list[Problem]:
    """One problem per schema error of `source`; an unknown key and the missing required key
    it misspells are one problem, placed at the unknown key."""
    details = _own_errors(error)
    misspellings = _misspellings(model, data, details)
    folded = {(*m.loc[:-1], m.meant) for m in misspellings if m.meant is not None}
    problems = []
    for detail in details:
        loc = tuple(detail["loc"])
        if detail["type"] == "missing" and loc in folded:
            continue
        if detail["type"] == "extra_forbidden":
            meant = next(m.meant for m in misspellings if m.loc == loc)
            hint = f" (did you mean {meant!r}?)" if meant else ""
            problems.append(source.problem(loc, f"unknown key {loc[-1]!r}{hint}"))
            continue
        problems.append(source.problem(loc, detail["msg"]))
    return problems


@dataclass(frozen=True)
class Salvaged(Generic[ModelT]):
    """What `salvage` could read of a file: the model (None when nothing usable is left),
    the names and OIDs left out, and the list entries removed, in the order they were
    (each location as it was when its entry was removed)."""

    model: ModelT | None
    left_out: set[str]
    removed: list[Loc]


def salvage(model: type[ModelT], data: Any, error: ValidationError) -> Salvaged[ModelT]:
    """`data` validated as `model` after repairs: misspelt keys renamed, other unknown keys
    dropped, and each list entry that still fails removed. The model is None when an error
    lies outside every list entry."""
    data = copy.deepcopy(data)
    left_out: set[str] = set()
    removed: list[Loc] = []
    for _round in range(SALVAGE_ROUNDS):
        details = _own_errors(error)
        misspellings = _misspellings(model, data, details)
        renamed = {(*m.loc[:-1], m.meant) for m in misspellings if m.meant is not None}
        for misspelling in misspellings:
            _rename(data, misspelling)
        entries: set[Loc] = set()
        for detail in details:
            if detail["type"] == "extra_forbidden" or tuple(detail["loc"]) in renamed:
                continue
            entry = _innermost_entry(data, tuple(detail["loc"]))
            if entry is None:
                return Salvaged(None, left_out | set(_names(data)), removed)
            entries.add(entry)
        # inner lists before the entries holding them, and the last entries of a list first,
        # so that the locations of the others still hold
        for loc in sorted(entries, key=lambda loc: (loc[:-1], loc[-1]), reverse=True):
            container = _at(data, loc[:-1])
            names = set(_names(container[loc[-1]]))
            document = data.get("name") if isinstance(data, dict) else None
            # expressions of other files name them FORM.ITEM
            left_out.update(names, {f"{document}.{name}" for name in names if document})
            del container[loc[-1]]
            removed.append(loc)
        try:
            return Salvaged(model.model_validate(data), left_out, removed)
        except ValidationError as again:
            error = again
    return Salvaged(None, left_out | set(_names(data)), removed)


def follows_from(problem: Problem, left_out: Iterable[str]) -> bool:
    """Whether `problem` names something that was left out (and so merely follows from the
    problem that made it be left out)."""
    return any(
        re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", problem.message) for name in left_out
    )


def _misspellings(
    model: type[BaseModel], data: Any, details: list[ErrorDetails]
) -> list[_Misspelling]:
    """Each unknown key with the key of its model it is closest to, if one is close: a
    required key reported missing beside it, else any key not already given there."""
    missing = {tuple(d["loc"]) for d in details if d["type"] == "missing"}
    found = []
    for detail in details:
        if detail["type"] != "extra_forbidden":
            continue
        loc = tuple(detail["loc"])
        unknown, parent = str(loc[-1]), loc[:-1]
        keys = _keys_at(model, parent)
        given = _at(data, parent)
        absent = [key for key in keys if (*parent, key) in missing]
        free = [key for key in keys if not isinstance(given, dict) or key not in given]
        close = difflib.get_close_matches(unknown, absent, n=1, cutoff=0.6) or (
            difflib.get_close_matches(unknown, free, n=1, cutoff=0.6)
        )
        found.append(_Misspelling(loc, unknown, close[0] if close else None))
    return found


def _own_errors(error: ValidationError) -> list[ErrorDetails]:
    """The errors of a validation, less a list's "too short" that only counts the entries
    which failed (pydantic reports both: the entry's error and the list as too short)."""
    details = error.errors(include_url=False)
    locs = [tuple(detail["loc"]) for detail in details]
    return [
        detail
        for detail, loc in zip(details, locs, strict=True)
        if detail["type"] != "too_short"
        or not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
    ]


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at `loc` of a `model` document may have (by their YAML names)."""
    current: Any = model
    for key in loc:
        if isinstance(key, int):
            continue
        fields = _fields(current)
        field = next(
            (f for name, f in fields.items() if key in (name, f.alias)),
            None,
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return [field.alias or name for name, field in _fields(current).items()]


def _fields(model: Any) -> dict[str, Any]:
    return (
        dict(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else {}
    )


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class an annotation holds: itself, or inside `X | None`, `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple, list, dict):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _rename(data: Any, misspelling: _Misspelling) -> None:
    """Rename the unknown key to the key meant, unless that one is given too (then drop it)."""
    parent = _at(data, misspelling.loc[:-1])
    if not isinstance(parent, dict) or misspelling.unknown not in parent:
        return
    value = parent.pop(misspelling.unknown)
    if misspelling.meant is not None and misspelling.meant not in parent:
        parent[misspelling.meant] = value


def _at(data: Any, loc: Loc) -> Any:
    for key in loc:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _innermost_entry(data: Any, loc: Loc) -> Loc | None:
    """The location of the deepest list entry along `loc`, or None if there is none."""
    entry = None
    for depth, key in enumerate(loc):
        if isinstance(data, list) and isinstance(key, int) and key < len(data):
            entry = loc[: depth + 1]
            data = data[key]
        elif isinstance(data, dict) and key in data:
            data = data[key]
        else:
            break
    return entry


def _names(data: Any) -> Iterable[str]:
    """The `oid` and `name` values anywhere in `data`."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("oid", "name") and isinstance(value, str):
                yield value
            else:
                yield from _names(value)
    elif isinstance(data, list):
        for value in data:
            yield from _names(value)

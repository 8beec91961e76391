"""Problems found in a study definition, with the file and line they point at."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a study definition."""

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{place}: {self.where}: {self.message}" if self.where else f"{place}: {self.message}"
        )


class StudyDefinitionError(Exception):
    """A study definition that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(format_problems(problems))


def format_problems(problems: list[Problem]) -> str:
    lines = [f"{len(problems)} problem(s) in the study definition:"]
    lines += [f"  {problem}" for problem in problems]
    return "\n".join(lines)


@dataclass(frozen=True)
class SourceFile:
    """A parsed YAML file with its node tree, so that a location can be turned into a line."""

    path: Path
    display: str
    root: yaml.Node | None
    removed: tuple[Loc, ...] = ()
    """List entries taken out of `root` (see `without`), in the order they were."""

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the deepest node along `loc` (a pydantic-style location)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for key in loc:
            child = _child(node, key)
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line

    def problem(self, loc: Loc, message: str, where: str = "") -> Problem:
        """A problem at `loc` of the values (as left after `without`), named by its place in
        the file as written."""
        where = where or describe_loc(self.as_written(loc))
        return Problem(self.display, self.line_of(loc), where, message)

    def without(self, removed: list[Loc]) -> SourceFile:
        """This file with the list entries at `removed` taken out of its node tree, one after
        the other, so that locations in what remains of the values still find their lines."""
        root = copy.deepcopy(self.root)
        for loc in removed:
            parent = root
            for key in loc[:-1]:
                parent = _child(parent, key)
            if isinstance(parent, yaml.SequenceNode) and isinstance(loc[-1], int):
                del parent.value[loc[-1]]
        return replace(self, root=root, removed=(*self.removed, *removed))

    def as_written(self, loc: Loc) -> Loc:
        """`loc` in what is left after `without`, as the location in the file as written."""
        for entry in reversed(self.removed):
            depth = len(entry) - 1
            index, removed = loc[depth] if len(loc) > depth else None, entry[depth]
            if not (isinstance(index, int) and isinstance(removed, int)):
                continue
            if loc[:depth] == entry[:depth] and index >= removed:
                loc = (*loc[:depth], index + 1, *loc[depth + 1 :])
        return loc


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]  # type: ignore[no-any-return]
    return None


def describe_loc(loc: Loc) -> str:
    """`('item_groups', 0, 'items', 3, 'label')` -> `item_groups[0].items[3].label`."""
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text

"""Evaluating one form: parse typed values, apply show-if conditions, compute derivations.

Pure: no database, no clock. The service layer loads what a form needs (its submitted values
and the values of other forms its expressions read) and stores what comes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.expressions import ExpressionError, compile_expression
from app.study.derivations import derivation_order
from app.study.loader import Study
from app.study.model import FormDef, ItemDef, ItemGroupDef

from .values import (
    NO_DATE_LIMITS,
    DateLimits,
    InvalidValue,
    Parsed,
    derived_value,
    expression_value,
    parse_value,
)

FieldKey = tuple[str, int, str]
"""(item group OID, repeat key, item name): one field of a form."""

RawRows = Mapping[str, Mapping[int, Mapping[str, str | list[str] | None]]]
"""Submitted text by group OID, repeat key and item name."""

Rows = dict[str, dict[int, dict[str, str | None]]]
"""Canonical values by group OID, repeat key and item name."""

MAX_VISIBILITY_PASSES = 4


@dataclass
class FormEvaluation:
    """The outcome of evaluating a form: values to store and what to tell the user."""

    values: Rows
    errors: dict[FieldKey, str] = field(default_factory=dict)
    flags: dict[FieldKey, str] = field(default_factory=dict)
    hidden: set[FieldKey] = field(default_factory=set)
    hidden_groups: set[str] = field(default_factory=set)
    missing: set[FieldKey] = field(default_factory=set)
    reason_needed: set[FieldKey] = field(default_factory=set)
    """Changed fields of a complete form that still need a reason (set when saving)."""
    failed_checks: dict[FieldKey, str] = field(default_factory=dict)
    """Fields whose error is a hard edit check's message, with the check's id."""

    @property
    def is_valid(self) -> bool:
        return not self.errors


def evaluate_form(
    study: Study,
    form: FormDef,
    submitted: RawRows,
    other_forms: Mapping[str, Mapping[str, str | None]],
    limits: DateLimits = NO_DATE_LIMITS,
) -> FormEvaluation:
    """Parse `submitted`, compute derived items and visibility, and find missing answers.

    `other_forms` holds the subject's saved values of other forms by form name, then item
    name, for expressions such as `IC.ICDAT`. Derived values in `submitted` are ignored;
    hidden items come out empty; preset row values always come from the definition. Dates
    are checked against `limits` (the study's earliest date, the site's today).
    """
    evaluation = FormEvaluation(values={})
    for group in form.item_groups:
        rows = _group_rows(group, submitted.get(group.oid, {}))
        evaluation.values[group.oid] = {}
        for repeat, row in rows.items():
            evaluation.values[group.oid][repeat] = _parse_row(
                study, group, repeat, row, evaluation, limits
            )
    _Evaluator(study, form, evaluation, other_forms).run()
    return evaluation


def _group_rows(
    group: ItemGroupDef, submitted: Mapping[int, Mapping[str, str | list[str] | None]]
) -> dict[int, Mapping[str, str | list[str] | None]]:
    if not group.repeating:
        return {1: submitted.get(1, {})}
    rows: dict[int, Mapping[str, str | list[str] | None]] = {}
    for index, preset in enumerate(group.rows, start=1):
        rows[index] = {**submitted.get(index, {}), **preset}
    for repeat in sorted(submitted):
        if repeat > len(group.rows):
            rows[repeat] = submitted[repeat]
    return rows


def _parse_row(
    study: Study,
    group: ItemGroupDef,
    repeat: int,
    row: Mapping[str, str | list[str] | None],
    evaluation: FormEvaluation,
    limits: DateLimits,
) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for item in group.items:
        if item.is_derived:
            values[item.name] = None
            continue
        try:
            parsed = parse_value(item, row.get(item.name), _codelist(study, item), limits)
        except InvalidValue as error:
            evaluation.errors[(group.oid, repeat, item.name)] = str(error)
            raw = row.get(item.name)
            values[item.name] = ",".join(raw) if isinstance(raw, list) else raw
            continue
        values[item.name] = parsed.value
        if parsed.flag:
            evaluation.flags[(group.oid, repeat, item.name)] = parsed.flag
    return values


def _codelist(study: Study, item: ItemDef) -> Any:
    return study.codelists.get(item.codelist) if item.codelist else None


class _Evaluator:
    """Runs derivations and show-if conditions to a fixed point over one form's values."""

    def __init__(
        self,
        study: Study,
        form: FormDef,
        evaluation: FormEvaluation,
        other_forms: Mapping[str, Mapping[str, str | None]],
    ) -> None:
        self.study = study
        self.form = form
        self.evaluation = evaluation
        self.order = derivation_order(form)
        self.other_scope = other_form_scope(study, referenced_forms(study, form), other_forms)
        self.plain_items = {
            item.name: (group, item)
            for group in form.item_groups
            if not group.repeating
            for item in group.items
        }
        self.repeating_groups = {g.name: g for g in form.item_groups if g.repeating}
        self.read_names = _names_read(form)
        self.row_items = {g.oid: {item.name: item for item in g.items} for g in form.item_groups}

    def run(self) -> None:
        evaluation = self.evaluation
        for _ in range(MAX_VISIBILITY_PASSES):
            self._derive()
            hidden_before = (set(evaluation.hidden), set(evaluation.hidden_groups))
            self._apply_visibility()
            changed = evaluation.hidden ^ hidden_before[0]
            # Another pass only when a cleared or restored answer feeds an expression.
            if evaluation.hidden_groups == hidden_before[1] and not any(
                name in self.read_names for _, _, name in changed
            ):
                break
        self._flag_derived()
        self._find_missing()

    def _scope(
        self, names: frozenset[str], group: ItemGroupDef | None = None, repeat: int | None = None
    ) -> dict[str, Any]:
        """CEL values of exactly the names an expression reads (building every row of every
        group for each evaluation would make a lab panel quadratic)."""
        scope: dict[str, Any] = {}
        own = self.row_items[group.oid] if group is not None and group.repeating else {}
        for name in names:
            if name in own and group is not None and repeat is not None:
                scope[name] = self._value(group, repeat, own[name])
            elif name in self.plain_items:
                plain_group, item = self.plain_items[name]
                scope[name] = self._value(plain_group, 1, item)
            elif name in self.repeating_groups:
                each = self.repeating_groups[name]
                scope[name] = [
                    self._row_scope(each, r) for r in sorted(self.evaluation.values[each.oid])
                ]
            elif name in self.other_scope:
                scope[name] = self.other_scope[name]
        return scope

    def _value(self, group: ItemGroupDef, repeat: int, item: ItemDef) -> Any:
        """The CEL value of one field; a value that failed to parse reads as null."""
        if (group.oid, repeat, item.name) in self.evaluation.errors:
            return None
        return expression_value(item, self.evaluation.values[group.oid][repeat].get(item.name))

    def _row_scope(self, group: ItemGroupDef, repeat: int) -> dict[str, Any]:
        return {item.name: self._value(group, repeat, item) for item in group.items}

    def _derive(self) -> None:
        for group, item in self.order:
            assert item.derivation is not None
            expression = compile_expression(item.derivation)
            for repeat, row in self.evaluation.values[group.oid].items():
                if (group.oid, repeat, item.name) in self.evaluation.hidden:
                    row[item.name] = None
                    continue
                try:
                    result = expression.evaluate(self._scope(expression.variables, group, repeat))
                except ExpressionError:
                    result = None  # an input is missing or unusable: no value yet
                row[item.name] = derived_value(item, result)

    def _apply_visibility(self) -> None:
        evaluation = self.evaluation
        evaluation.hidden.clear()
        evaluation.hidden_groups.clear()
        for group in self.form.item_groups:
            if group.show_if and not self._condition(group.show_if, None, None):
                evaluation.hidden_groups.add(group.oid)
            group_shown = group.oid not in evaluation.hidden_groups
            for repeat, row in evaluation.values[group.oid].items():
                # Items of a row often share a condition (a lab result, its unit and its range
                # all hang on "not done"): each is evaluated once until a value is cleared.
                decided: dict[str, bool] = {}
                for item in group.items:
                    shown = group_shown
                    if shown and item.show_if is not None:
                        if item.show_if not in decided:
                            decided[item.show_if] = self._condition(item.show_if, group, repeat)
                        shown = decided[item.show_if]
                    if not shown:
                        key = (group.oid, repeat, item.name)
                        evaluation.hidden.add(key)
                        if row[item.name] is not None:
                            row[item.name] = None
                            decided.clear()
                        evaluation.errors.pop(key, None)
                        evaluation.flags.pop(key, None)

    def _condition(self, source: str, group: ItemGroupDef | None, repeat: int | None) -> bool:
        """A show-if result; an error shows the item, so that nothing is hidden by mistake."""
        expression = compile_expression(source)
        try:
            return (
                expression.evaluate(self._scope(expression.variables, group, repeat)) is not False
            )
        except ExpressionError:
            return True

    def _flag_derived(self) -> None:
        for group, item in self.order:
            for repeat, row in self.evaluation.values[group.oid].items():
                flag = _derived_range_flag(item, row.get(item.name))
                if flag:
                    self.evaluation.flags[(group.oid, repeat, item.name)] = flag

    def _find_missing(self) -> None:
        evaluation = self.evaluation
        for group in self.form.item_groups:
            for repeat, row in evaluation.values[group.oid].items():
                for item in group.items:
                    key = (group.oid, repeat, item.name)
                    if item.required and key not in evaluation.hidden and row[item.name] is None:
                        if key not in evaluation.errors:
                            evaluation.missing.add(key)


def _names_read(form: FormDef) -> frozenset[str]:
    """Every name that a condition or derivation of the form reads (a group counts as its
    items)."""
    sources = [g.show_if for g in form.item_groups] + [
        source for g in form.item_groups for i in g.items for source in (i.show_if, i.derivation)
    ]
    names = set().union(*(compile_expression(s).variables for s in sources if s))
    for group in form.item_groups:
        if group.name in names:
            names |= {item.name for item in group.items}
    return frozenset(names)


def _derived_range_flag(item: ItemDef, value: str | None) -> str | None:
    """Derived values are never rejected: either range only flags them for review."""
    if value is None:
        return None
    number = float(value) if item.hard_range or item.soft_range else None
    for bounds in (item.hard_range, item.soft_range):
        if bounds is not None and number is not None and not bounds.contains(number):
            return f"{value} is outside the expected range ({bounds.describe()})"
    return None


def other_form_scope(
    study: Study, names: set[str], other_forms: Mapping[str, Mapping[str, str | None]]
) -> dict[str, dict[str, Any]]:
    """CEL maps of the other forms an expression reads; a form not yet saved reads as nulls."""
    scope: dict[str, dict[str, Any]] = {}
    for form_name in names:
        form = study.form_by_name(form_name)
        values = other_forms.get(form_name, {})
        if form is None:
            continue
        scope[form_name] = {
            item.name: expression_value(item, values.get(item.name))
            for group in form.item_groups
            if not group.repeating
            for item in group.items
        }
    return scope


def referenced_forms(study: Study, form: FormDef) -> set[str]:
    """Names of other forms whose items the expressions of `form` read."""
    return {name for name, _ in study.dependencies.reads[form.oid]}


__all__ = ["FieldKey", "FormEvaluation", "Parsed", "Rows", "evaluate_form", "referenced_forms"]

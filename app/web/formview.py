"""What the form template shows: fields with their widget, value, error, flag and visibility."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData as RequestForm

from app.crf.engine import FieldKey, FormEvaluation, RawRows, Rows
from app.crf.values import shown_text
from app.study.loader import Study
from app.study.model import CodeList, DataType, FormDef, ItemDef, ItemGroupDef

CHOICE_RADIO_LIMIT = 6
FIELD_NAME = re.compile(r"^(?P<group>[^:]+):(?P<repeat>\d{1,4}):(?P<item>[A-Z][A-Z0-9_]*|_row)$")
"""`<group OID>:<repeat>:<item name>`; `_row` marks a row that exists even with no answers."""
REASON_PREFIX = "_reason:"
DATE_FORMATS = {
    "date": "YYYY-MM-DD",
    "datetime": "YYYY-MM-DD hh:mm",
    "time": "hh:mm",
    "partial_date": "YYYY-MM-DD, YYYY-MM-UNK or YYYY-UNK-UNK",
}
"""The format hint shown next to each date and time widget: what the server accepts, typed
as text (a browser's date picker shows its locale's order and drops an impossible date)."""
REMOVED_FIELD = "_removed"
"""Carries `<group OID>:<repeat>` of each row the user removed, from preview to save."""


def field_name(group_oid: str, repeat: int, item_name: str) -> str:
    return f"{group_oid}:{repeat}:{item_name}"


def field_id(group_oid: str, repeat: int, item_name: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "_", f"{group_oid}-{repeat}-{item_name}")


def submitted_rows(form: FormDef, data: RequestForm) -> dict[str, dict[int, dict[str, Any]]]:
    """Submitted field values by group OID, repeat key and item name; unknown fields ignored."""
    groups = {group.oid for group in form.item_groups}
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for name in set(data.keys()):
        match = FIELD_NAME.match(name)
        if not match or match["group"] not in groups:
            continue
        row = rows.setdefault(match["group"], {}).setdefault(int(match["repeat"]), {})
        if match["item"] == "_row":
            continue
        values = [v for v in data.getlist(name) if isinstance(v, str)]
        value: Any = values if len(values) > 1 else (values[0] if values else None)
        row[match["item"]] = value
    return rows


def field_reasons(data: RequestForm) -> dict[FieldKey, str]:
    """Per-field reasons for change, posted as `_reason:<field name>`."""
    reasons: dict[FieldKey, str] = {}
    for name, value in data.items():
        match = FIELD_NAME.match(name.removeprefix(REASON_PREFIX))
        if name.startswith(REASON_PREFIX) and match and isinstance(value, str) and value.strip():
            reasons[(match["group"], int(match["repeat"]), match["item"])] = value.strip()
    return reasons


def removed_rows(form: FormDef, data: RequestForm) -> frozenset[tuple[str, int]]:
    """Rows of the form's repeating groups that the user removed before saving."""
    groups = {group.oid for group in form.item_groups if group.repeating}
    removed = set()
    for value in data.getlist(REMOVED_FIELD):
        group_oid, _, repeat = str(value).rpartition(":")
        if group_oid in groups and repeat.isdigit() and 0 < int(repeat) < 10_000:
            removed.add((group_oid, int(repeat)))
    return frozenset(removed)


@dataclass(frozen=True)
class SummaryLine:
    """One entry of the list of problems at the top of a refused form: the field it links to
    (None when the field is not on the page, e.g. in a removed row), where and what."""

    field_id: str | None
    where: str
    message: str


def error_summary(
    form: FormDef, evaluation: FormEvaluation, show_missing: bool
) -> list[SummaryLine]:
    """Every error of the evaluation (and every missing answer when `show_missing`), in the
    order of the form."""
    problems = dict(evaluation.errors)
    if show_missing:
        problems.update(dict.fromkeys(evaluation.missing - problems.keys(), "is required"))
    lines = []
    for group in form.item_groups:
        shown = evaluation.values.get(group.oid, {})
        keys = [key for key in problems if key[0] == group.oid]
        order = {item.name: index for index, item in enumerate(group.items)}
        for key in sorted(keys, key=lambda k: (k[1], order.get(k[2], 0))):
            _, repeat, name = key
            item = next((i for i in group.items if i.name == name), None)
            label = item.label if item else name
            where = f"{group.label}, row {repeat}: {label}" if group.repeating else label
            on_page = repeat in shown and key not in evaluation.hidden
            field = field_id(*key) if on_page else None
            lines.append(SummaryLine(field, where, problems[key]))
    return lines


MIN_NUMBER_WIDTH = 3
"""A number input is never narrower than three characters, whatever its range."""


@dataclass(frozen=True)
class FieldView:
    name: str
    id: str
    item: ItemDef
    widget: str
    format: str | None
    """The format to type the value in (DATE_FORMATS), shown next to a date or time widget."""
    value: str | None
    options: tuple[tuple[str, str], ...]
    selected: frozenset[str]
    units: str | None
    width: int | None
    """Characters a number input needs for any value its hard range allows (None: no range)."""
    error: str | None
    check: str | None
    """The id of the hard edit check whose message `error` is (a sentence of its own)."""
    flag: str | None
    hidden: bool
    needs_reason: bool


@dataclass(frozen=True)
class RowView:
    repeat: int
    fields: tuple[FieldView, ...]
    preset: bool


@dataclass(frozen=True)
class GroupView:
    group: ItemGroupDef
    rows: tuple[RowView, ...]
    hidden: bool


def form_view(
    study: Study,
    form: FormDef,
    values: Rows | RawRows,
    evaluation: FormEvaluation | None,
    show_missing: bool = False,
) -> list[GroupView]:
    """Build the view of every group and field from values (stored or as typed)."""
    views: list[GroupView] = []
    for group in form.item_groups:
        group_values = values.get(group.oid, {})
        repeats = sorted(set(group_values) | set(range(1, len(group.rows) + 1)))
        if not group.repeating:
            repeats = [1]
        rows = []
        for repeat in repeats:
            preset = group.rows[repeat - 1] if repeat <= len(group.rows) else {}
            row_values = {**group_values.get(repeat, {}), **preset}
            fields = tuple(
                _field(
                    study, group, repeat, item, row_values.get(item.name), evaluation, show_missing
                )
                for item in group.items
            )
            rows.append(RowView(repeat, fields, preset=repeat <= len(group.rows)))
        hidden = evaluation is not None and group.oid in evaluation.hidden_groups
        views.append(GroupView(group, tuple(rows), hidden))
    return views


def _field(
    study: Study,
    group: ItemGroupDef,
    repeat: int,
    item: ItemDef,
    raw: Any,
    evaluation: FormEvaluation | None,
    show_missing: bool,
) -> FieldView:
    key = (group.oid, repeat, item.name)
    codelist = study.codelists.get(item.codelist) if item.codelist else None
    value = ",".join(raw) if isinstance(raw, list) else raw
    if evaluation is not None and (item.is_derived or key in evaluation.hidden):
        value = evaluation.values.get(group.oid, {}).get(repeat, {}).get(item.name)
    error = evaluation.errors.get(key) if evaluation else None
    if error is None and show_missing and evaluation and key in evaluation.missing:
        error = "is required"
    unit = study.units.get(item.units) if item.units else None
    widget = _widget(item, codelist, in_row=group.repeating)
    return FieldView(
        name=field_name(group.oid, repeat, item.name),
        id=field_id(group.oid, repeat, item.name),
        item=item,
        widget=widget,
        format=DATE_FORMATS.get(widget),
        value=shown_text(item, value),
        options=tuple((ci.code, ci.decode) for ci in codelist.items) if codelist else (),
        selected=frozenset((value or "").split(",")) if codelist else frozenset(),
        units=unit.symbol if unit else None,
        width=_number_width(item, value) if widget == "number" else None,
        error=error,
        check=evaluation.failed_checks.get(key) if evaluation else None,
        flag=evaluation.flags.get(key) if evaluation else None,
        hidden=evaluation is not None and key in evaluation.hidden,
        needs_reason=evaluation is not None and key in evaluation.reason_needed,
    )


def _widget(item: ItemDef, codelist: CodeList | None, *, in_row: bool) -> str:
    """Radio buttons for short code lists on a page; selects in table rows, to stay compact."""
    if item.is_derived:
        return "derived"
    if item.type == DataType.CHOICE:
        few = codelist is not None and len(codelist.items) <= CHOICE_RADIO_LIMIT
        return "radio" if few and not in_row else "select"
    return {
        DataType.MULTICHOICE: "checkboxes",
        DataType.DATE: "date",
        DataType.DATETIME: "datetime",
        DataType.TIME: "time",
        DataType.BOOLEAN: "boolean",
        DataType.INTEGER: "number",
        DataType.FLOAT: "number",
        DataType.PARTIAL_DATE: "partial_date",
    }.get(item.type, "textarea" if (item.length or 0) > 200 else "text")


def _number_width(item: ItemDef, value: str | None) -> int | None:
    """Characters for the widest value within the item's hard range (digits, sign, decimal
    point and decimals), or the value itself if wider; None when either end is open."""
    bounds = item.hard_range
    if bounds is None or bounds.min is None or bounds.max is None:
        return None
    integer = max(len(str(int(end))) for end in (bounds.min, bounds.max))
    decimals = item.decimals + 1 if item.decimals else 0
    return max(integer + decimals, len(value or ""), MIN_NUMBER_WIDTH)

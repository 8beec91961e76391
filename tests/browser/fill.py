"""Filling eCRF pages in the browser the way a coordinator would, field by field.

Values come from the caller where they matter, otherwise from the form definition (a value
inside the item's ranges, the first answer of its code list), so a test can complete a long
form without restating all of it.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page

from app.study.loader import Study
from app.study.model import DataType, ItemDef, ItemGroupDef

Choose = Callable[[ItemGroupDef, int, ItemDef], str | None]
"""Returns the value for a field, or None for the definition's typical value."""


def typical(study: Study, item: ItemDef, day: str) -> str:
    """A plausible value for an item: mid-range numbers, the first code, `day` for dates."""
    if item.type in (DataType.CHOICE, DataType.MULTICHOICE):
        return study.codelists[item.codelist or ""].items[0].code
    if item.type in (DataType.INTEGER, DataType.FLOAT):
        bounds = item.soft_range or item.hard_range
        low = bounds.min if bounds and bounds.min is not None else 1
        high = bounds.max if bounds and bounds.max is not None else low + 2
        middle = (low + high) / 2
        return (
            str(round(middle))
            if item.type == DataType.INTEGER or item.decimals == 0
            else f"{middle:.1f}"
        )
    return {
        DataType.DATE: day,
        DataType.PARTIAL_DATE: day,
        DataType.DATETIME: f"{day}T09:00",
        DataType.TIME: "09:00",
        DataType.BOOLEAN: "true",
    }.get(item.type, "as per source")


def settle(page: Page) -> None:
    page.wait_for_function("() => !document.querySelector('.htmx-request')")


def add_rows(page: Page, group_label: str, count: int) -> None:
    for _ in range(count):
        page.get_by_role("button", name=f"Add a row to {group_label}").click()
        settle(page)


def fill_form(page: Page, study: Study, form_oid: str, day: str, choose: Choose) -> None:
    """Answer every shown field that `choose` names, and every shown, empty, required one with
    its typical value; pass again while answers reveal more fields (show-if)."""
    form = study.form(form_oid)
    for _ in range(6):
        answered = 0
        for group in form.item_groups:
            for item in group.items:
                if item.is_derived:
                    continue
                names = page.locator(f"[name^='{group.oid}:'][name$=':{item.name}']").evaluate_all(
                    "elements => [...new Set(elements.map(e => e.name))]"
                )
                for name in names:
                    wanted = choose(group, int(name.split(":")[1]), item)
                    if wanted is None and not item.required:
                        continue
                    value = wanted if wanted is not None else typical(study, item, day)
                    answered += _answer(page, name, value, overwrite=wanted is not None)
        if not answered:
            return
        page.locator("#crf").dispatch_event("change")
        settle(page)


def _answer(page: Page, name: str, value: str, *, overwrite: bool) -> int:
    """Set one visible field to `value` (when empty, or always with `overwrite`); 1 if set."""
    fields = page.locator(f"[name='{name}']")
    first = fields.first
    kind = first.get_attribute("type") or ""
    if kind == "hidden":
        return 0
    if kind in ("radio", "checkbox"):
        option = page.locator(f"[name='{name}'][value='{value}']")
        chosen = page.locator(f"[name='{name}']:checked").count()
        if option.count() == 0 or not option.is_visible() or option.is_checked():
            return 0
        if chosen and not overwrite:
            return 0
        option.check()
        return 1
    if not first.is_visible() or not first.is_editable():
        return 0
    current = first.input_value()
    if current == value or (current and not overwrite):
        return 0
    if first.evaluate("e => e.tagName") == "SELECT":
        first.select_option(value)
    else:
        first.fill(value)
    return 1

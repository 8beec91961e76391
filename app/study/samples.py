"""Representative values of items, for dry-running a study's expressions before any data
exist (`trialdesk study check`)."""

from __future__ import annotations

from typing import Any

from app.study.model import CodeList, DataType, FormDef, ItemDef, ItemGroupDef


def plain_items(form: FormDef) -> list[tuple[ItemGroupDef, ItemDef]]:
    return [(g, i) for g in form.item_groups if not g.repeating for i in g.items]


def sample_value(item: ItemDef, codelist: CodeList | None) -> Any:
    """A representative non-null value of an item's type, for dry-running expressions."""
    if item.type in (DataType.CHOICE, DataType.MULTICHOICE):
        code = codelist.items[0].code if codelist else "X"
        return [code] if item.type == DataType.MULTICHOICE else code
    return {
        DataType.TEXT: "text",
        DataType.INTEGER: 1.0,
        DataType.FLOAT: 1.0,
        DataType.DATE: "2020-01-01",
        DataType.PARTIAL_DATE: "2020-01-01",
        DataType.DATETIME: "2020-01-01T08:00",
        DataType.TIME: "08:00",
        DataType.BOOLEAN: True,
    }[item.type]

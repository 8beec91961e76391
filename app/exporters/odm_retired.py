"""ODM metadata of what earlier definition versions had and the running one removed.

Stored values of a removed item, item group or form are exported with the ClinicalData, so
the MetaDataVersion describes them: FormRefs, ItemGroupRefs and ItemRefs (never mandatory)
after the current ones, and FormDefs, ItemGroupDefs and ItemDefs described as not in the
current definition, without derivations, conditions, ranges, code lists or units that the
current definition may no longer have.
"""

from __future__ import annotations

import odmlib.odm_1_3_2.model as ODM

from app.exporters.odm_elements import description, text, yes_no
from app.study.loader import Study
from app.study.model import ItemDef, ItemGroupDef, odm_data_type

RETIRED = "Not in the current definition: values entered under an earlier version, kept as entered"


def form_refs(study: Study, event_oid: str, first: int) -> list[ODM.FormRef]:
    """FormRefs of the removed forms that an earlier schedule had at `event_oid`."""
    oids = [oid for oid, form in study.retired.forms.items() if event_oid in form.events]
    return [
        ODM.FormRef(FormOID=oid, OrderNumber=number, Mandatory="No")
        for number, oid in enumerate(oids, start=first)
    ]


def group_refs(study: Study, form_oid: str, first: int) -> list[ODM.ItemGroupRef]:
    """ItemGroupRefs of the groups removed from a form the definition still has."""
    return _group_refs(study.retired.groups.get(form_oid, ()), first)


def item_refs(study: Study, group_oid: str, first: int) -> list[ODM.ItemRef]:
    """ItemRefs of the items removed from a group the definition still has."""
    return _item_refs(study.retired.items.get(group_oid, ()), first)


def form_defs(study: Study) -> list[ODM.FormDef]:
    return [
        ODM.FormDef(
            OID=oid,
            Name=retired.form.title,
            Repeating=yes_no(retired.repeating),
            Description=description(RETIRED),
            ItemGroupRef=_group_refs(retired.form.item_groups, 1),
        )
        for oid, retired in study.retired.forms.items()
    ]


def group_defs(study: Study) -> list[ODM.ItemGroupDef]:
    """ItemGroupDefs of removed groups, of removed forms and of forms still defined."""
    domains = {
        **{oid: form.domain for oid, form in study.forms.items()},
        **{oid: retired.form.domain for oid, retired in study.retired.forms.items()},
    }
    return [
        _group_def(group, domains.get(form_oid)) for form_oid, group in study.retired.group_items()
    ]


def item_defs(study: Study) -> list[ODM.ItemDef]:
    """ItemDefs of every removed item (an OID the current definition uses again is left out:
    the current ItemDef describes it)."""
    current = {
        item.oid for form in study.forms.values() for g in form.item_groups for item in g.items
    }
    return [
        _item_def(study, item)
        for oid, item in study.retired.items_by_oid().items()
        if oid not in current
    ]


def _group_refs(groups: tuple[ItemGroupDef, ...], first: int) -> list[ODM.ItemGroupRef]:
    return [
        ODM.ItemGroupRef(ItemGroupOID=group.oid, OrderNumber=number, Mandatory="No")
        for number, group in enumerate(groups, start=first)
    ]


def _item_refs(items: tuple[ItemDef, ...], first: int) -> list[ODM.ItemRef]:
    return [
        ODM.ItemRef(ItemOID=item.oid, OrderNumber=number, Mandatory="No")
        for number, item in enumerate(items, start=first)
    ]


def _group_def(group: ItemGroupDef, domain: str | None) -> ODM.ItemGroupDef:
    element = ODM.ItemGroupDef(
        OID=group.oid,
        Name=group.name,
        Repeating=yes_no(group.repeating),
        Description=description(f"{group.label}. {RETIRED}"),
        ItemRef=_item_refs(group.items, 1),
    )
    if domain:
        element.Domain = domain
    return element


def _item_def(study: Study, item: ItemDef) -> ODM.ItemDef:
    codelist = study.codelists.get(item.codelist) if item.codelist else None
    return ODM.ItemDef(
        OID=item.oid,
        Name=item.name,
        DataType=odm_data_type(item, codelist) if codelist or not item.codelist else "text",
        Description=description(RETIRED),
        Question=ODM.Question(TranslatedText=[text(item.label)]),
    )

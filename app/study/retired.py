"""What earlier released versions of a study defined and the running one removed.

Values entered under an earlier version stay stored when a later one removes their item, item
group or whole form; the casebook shows them read only and the ODM export describes them, so
that nothing entered is silently dropped (`app.studies.bind` fills this in from the stored
versions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.study.model import FormDef, ItemDef, ItemGroupDef


@dataclass(frozen=True)
class RetiredForm:
    """A form the running definition no longer has, as the latest version with it defined it."""

    form: FormDef
    events: tuple[str, ...]
    """The StudyEvent OIDs whose schedule held it, in that version's schedule order."""
    repeating: bool
    """A repeating log form (one form per event)."""


@dataclass(frozen=True)
class RetiredDefinitions:
    """Definitions of earlier versions that stored values may still refer to."""

    items: dict[str, tuple[ItemDef, ...]] = field(default_factory=dict)
    """Item group OID (of a group still defined) -> items removed from it."""
    groups: dict[str, tuple[ItemGroupDef, ...]] = field(default_factory=dict)
    """Form OID (of a form still defined) -> item groups removed from it."""
    forms: dict[str, RetiredForm] = field(default_factory=dict)
    """Form OID -> a whole form removed."""

    def group_items(self) -> list[tuple[str, ItemGroupDef]]:
        """Every removed item group, with the OID of the form it belonged to."""
        return [
            *((form, group) for form, groups in self.groups.items() for group in groups),
            *((oid, group) for oid, r in self.forms.items() for group in r.form.item_groups),
        ]

    def items_by_oid(self) -> dict[str, ItemDef]:
        """Every removed item (of removed forms, removed groups and surviving groups), by OID."""
        found = {item.oid: item for items in self.items.values() for item in items}
        for _, group in self.group_items():
            found.update((item.oid, item) for item in group.items)
        return found

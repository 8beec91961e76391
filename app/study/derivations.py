"""The order in which a form's derived items are computed (dependencies first)."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from app.expressions import compile_expression
from app.study.model import FormDef, ItemDef, ItemGroupDef


class DerivationCycle(Exception):
    """Derived items that depend on each other in a loop."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(" -> ".join(names))


def derivation_order(form: FormDef) -> list[tuple[ItemGroupDef, ItemDef]]:
    """Derived items of a form so that each comes after the derived items it reads.

    A derivation reading a repeating group's name depends on every derived item of that group.
    Raises DerivationCycle; expressions are assumed to compile (the study check ensures it).
    """
    derived = {
        item.name: (group, item)
        for group in form.item_groups
        for item in group.items
        if item.derivation is not None
    }
    group_members = {
        group.name: [item.name for item in group.items if item.name in derived]
        for group in form.item_groups
    }
    graph: dict[str, set[str]] = {}
    for name, (_, item) in derived.items():
        assert item.derivation is not None
        reads = compile_expression(item.derivation).variables
        needs = {read for read in reads if read in derived and read != name}
        for read in reads:
            needs.update(member for member in group_members.get(read, []) if member != name)
        if name in reads:
            needs.add(name)
        graph[name] = needs
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise DerivationCycle(list(error.args[1])) from error
    return [derived[name] for name in order]

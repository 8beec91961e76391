"""Which expressions read which items of other forms, indexed once per study.

A derivation or show-if condition may read another form's item as `FORM.ITEM` (DM.AGE reads
IC.ICDAT), and a requirement of the subject's path reads items (`IE.ELIGDER == 'Y'`) or a
form's status. When an input changes, the write path looks here for what to re-derive in the
subject's other forms and which statuses to check again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.expressions import compile_expression
from app.study.model import FormDef

if TYPE_CHECKING:
    from app.study.loader import Study

ItemRef = tuple[str, str]
"""(form name, item name)"""


@dataclass(frozen=True)
class DependencyIndex:
    """Readers of items, built from the study's expressions."""

    reads: dict[str, frozenset[ItemRef]]
    """Form OID -> the other forms' items its derivations and show-if conditions read."""
    readers: dict[ItemRef, frozenset[str]]
    """(form name, item name) -> OIDs of the forms whose expressions read it."""
    requirement_reads: dict[int, frozenset[ItemRef]]
    """Index of a transition of the subject path -> the items its conditions read."""
    requirement_forms: dict[int, frozenset[str]]
    """Index of a transition -> OIDs of the forms it requires complete."""

    def forms_reading(self, form_name: str, item_names: Iterable[str]) -> set[str]:
        """OIDs of the forms whose expressions read one of `item_names` of `form_name`."""
        found: set[str] = set()
        for name in item_names:
            found |= self.readers.get((form_name, name), frozenset())
        return found

    def transitions_reading(
        self, form: FormDef, item_names: Iterable[str], status_changed: bool
    ) -> set[int]:
        """Indexes of the transitions whose requirements read one of `item_names` of `form`,
        or (when its status changed) require the form complete."""
        names = {(form.name, name) for name in item_names}
        return {
            index
            for index, reads in self.requirement_reads.items()
            if reads & names or (status_changed and form.oid in self.requirement_forms[index])
        }


def cross_form_reads(source: str, form_names: set[str]) -> set[ItemRef]:
    """The `FORM.ITEM` references of an expression to the forms named in `form_names`."""
    variables = compile_expression(source).variables & form_names
    return {
        (name, item)
        for name in variables
        for item in re.findall(rf"\b{name}\s*\.\s*([A-Z][A-Z0-9_]*)", source)
    }


def build_dependencies(study: Study) -> DependencyIndex:
    """Index every derivation, show-if condition and path requirement of `study`."""
    names = {form.name for form in study.forms.values()}
    reads: dict[str, frozenset[ItemRef]] = {}
    readers: dict[ItemRef, set[str]] = {}
    for form in study.forms.values():
        # A form's own items and groups shadow a form of the same name (IG.DM is named DM).
        local = {group.name for group in form.item_groups}
        local |= {item.name for group in form.item_groups for item in group.items}
        found: set[ItemRef] = set()
        for source in _form_expressions(form):
            found |= cross_form_reads(source, names - local)
        reads[form.oid] = frozenset(found)
        for ref in found:
            readers.setdefault(ref, set()).add(form.oid)
    requirement_reads: dict[int, frozenset[ItemRef]] = {}
    requirement_forms: dict[int, frozenset[str]] = {}
    for index, transition in enumerate(study.subject_path.transitions):
        conditions = [r.condition for r in transition.requires if r.condition]
        requirement_reads[index] = frozenset(
            ref for source in conditions for ref in cross_form_reads(source, names)
        )
        requirement_forms[index] = frozenset(r.form for r in transition.requires if r.form)
    return DependencyIndex(
        reads=reads,
        readers={ref: frozenset(oids) for ref, oids in readers.items()},
        requirement_reads=requirement_reads,
        requirement_forms=requirement_forms,
    )


def _form_expressions(form: FormDef) -> list[str]:
    sources = [group.show_if for group in form.item_groups]
    for group in form.item_groups:
        sources += [item.show_if for item in group.items]
        sources += [item.derivation for item in group.items]
    return [source for source in sources if source]

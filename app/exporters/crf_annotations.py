"""The SDTM annotations of the annotated CRF (acrf.pdf), computed from the mappings in
`exports/`: which SDTM variable (or SUPP-- qualifier) each eCRF item goes to.

An item is annotated with a variable when the variable reads it: `item:`, `recode:`, a
derivation argument that names it (`FORM.ITEM`, or `ITEM` of the record source's form, or of
the form named by a `form` key beside it, or by a key naming a form as in `per_form`), and for
findings each `transpose` entry, as `VSORRES when VSTESTCD = SYSBP`. A test code of the
domain's transpositions in an argument selects a record, it reads no item. Variables whose
origin is not Collected (EPOCH from a date, --DY) annotate an item through their derivation
only when nothing else does. Before them, an item a derivation reads without naming it (the
row's LBTESTCD) is annotated with the variable of the same name in a domain its form feeds
(CDASH names are SDTM names). A supplemental
qualifier reads as `SUPPAE.QVAL when QNAM = AEDLT`. An item no mapping reads is
`[NOT SUBMITTED]`.

Each form gets the domains it feeds (its domain box, `AE (Adverse Events)`, with the `where`
conditions of its record sources), the form's own domain first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.sdtm.spec import DomainSpec, Origin, SdtmSpecs, Supplemental, ValueSource, Variable
from app.study.loader import Study, find_item
from app.study.model import FormDef, ItemDef

NOT_SUBMITTED = "[NOT SUBMITTED]"


@dataclass(frozen=True)
class Annotation:
    """One SDTM annotation of an item: its domain and the text shown, e.g. `AETERM`."""

    domain: str
    text: str


@dataclass
class FormAnnotations:
    """The annotations of one form: the domain box lines by domain code, in order, and the
    annotations of each item (by item OID), each once, in mapping order."""

    domains: dict[str, str] = field(default_factory=dict)
    items: dict[str, list[Annotation]] = field(default_factory=dict)

    def of(self, item: ItemDef) -> list[Annotation]:
        """The item's annotations; none: it is not submitted."""
        return self.items.get(item.oid, [])

    def add(self, item_oid: str, annotation: Annotation) -> None:
        known = self.items.setdefault(item_oid, [])
        if annotation not in known:
            known.append(annotation)


def annotate(study: Study, specs: SdtmSpecs) -> dict[str, FormAnnotations]:
    """Every form of the study (by OID) with its annotations; a form no mapping reads has
    none."""
    annotations = {oid: FormAnnotations() for oid in study.forms}
    derived: list[tuple[str, str, Annotation]] = []
    ordered = _own_domain_first(study, specs)
    for spec in ordered:
        derived += _annotate_domain(study, spec, annotations)
    for spec in ordered:
        _annotate_by_name(study, spec, annotations)
    for form_oid, item_oid, annotation in derived:
        if not annotations[form_oid].items.get(item_oid):
            annotations[form_oid].add(item_oid, annotation)
    labels = {spec.domain: spec.label for spec in ordered}
    for form in annotations.values():
        for domain in sorted(
            {a.domain for found in form.items.values() for a in found} - set(form.domains),
            key=list(labels).index,
        ):
            form.domains[domain] = f"{domain} ({labels[domain]})"
    return annotations


def _own_domain_first(study: Study, specs: SdtmSpecs) -> list[DomainSpec]:
    """Domains in mapping order, except that the domain a form declares comes first (its
    domain box leads the page)."""
    own = {form.domain for form in study.forms.values()}
    return sorted(specs.domains, key=lambda spec: spec.domain not in own)


def _annotate_domain(
    study: Study, spec: DomainSpec, annotations: dict[str, FormAnnotations]
) -> list[tuple[str, str, Annotation]]:
    """Annotate the forms `spec` reads; return the annotations of derived variables, with
    their form and item OIDs, to add where nothing else annotates the item."""
    source_forms = [study.forms[s.form] for s in spec.sources if s.form in study.forms]
    for source in spec.sources:
        if source.form not in study.forms:
            continue
        box = annotations[source.form].domains
        where = " and ".join(
            f"{item} {'in' if isinstance(value, tuple) else '='} "
            f"{', '.join(value) if isinstance(value, tuple) else value}"
            for item, value in source.where.items()
        )
        line = f"{spec.domain} ({spec.label})" + (f" where {where}" if where else "")
        if spec.domain not in box:
            box[spec.domain] = line
        elif where:
            box[spec.domain] += f"; {where}"
    test_codes = {
        str(value)
        for source in spec.sources
        for entry in source.transpose
        for value in entry.values.values()
    }
    derived: list[tuple[str, str, Annotation]] = []
    sources: list[tuple[ValueSource, str, Origin]] = [
        (variable, variable.name, variable.origin) for variable in spec.variables
    ]
    sources += [
        (qualifier, f"SUPP{spec.domain}.QVAL when QNAM = {qualifier.qnam}", qualifier.origin)
        for qualifier in spec.supplemental
    ]
    for value_source, text, origin in sources:
        for form, item in _read_items(study, value_source, source_forms, test_codes):
            annotation = Annotation(spec.domain, text)
            if origin.type == "Collected" or value_source.derivation is None:
                annotations[form.oid].add(item.oid, annotation)
            else:
                derived.append((form.oid, item.oid, annotation))
        call = value_source.derivation
        if call is not None and call.name == "transposed_result":
            if _collected_or_only(spec, value_source):
                _annotate_transposed(study, spec, text, annotations)
    return derived


def _annotate_by_name(
    study: Study, spec: DomainSpec, annotations: dict[str, FormAnnotations]
) -> None:
    names = {variable.name for variable in spec.variables}
    for source in spec.sources:
        form = study.forms.get(source.form or "")
        if form is None:
            continue
        for group in form.item_groups:
            for item in group.items:
                if item.name in names and not annotations[form.oid].items.get(item.oid):
                    annotations[form.oid].add(item.oid, Annotation(spec.domain, item.name))


def _read_items(
    study: Study,
    source: ValueSource,
    source_forms: list[FormDef],
    test_codes: set[str],
) -> list[tuple[FormDef, ItemDef]]:
    """The form items a variable or qualifier reads (its item, recode or derivation
    arguments; a transposed result is annotated per entry instead)."""
    references: list[tuple[str, FormDef | None]] = []
    if source.item is not None:
        references.append((source.item, None))
    if source.recode is not None:
        references.append((source.recode.item, None))
    if source.derivation is not None:
        references += [
            (name, form)
            for name, form in _named_items(study, source.derivation.args, None)
            if name not in test_codes
        ]
    return [
        found
        for reference, form in references
        for found in _resolve(study, reference, [form] if form else source_forms)
    ]


def _collected_or_only(spec: DomainSpec, source: ValueSource) -> bool:
    """A transposed result is annotated on the Collected result variables (--ORRES), or on
    every one when none is Collected; the standard results are derived from it."""
    results = [
        variable
        for variable in spec.variables
        if variable.derivation is not None and variable.derivation.name == "transposed_result"
    ]
    collected = [variable for variable in results if variable.origin.type == "Collected"]
    return not isinstance(source, Supplemental) and (
        not collected or (isinstance(source, Variable) and source in collected)
    )


def _annotate_transposed(
    study: Study, spec: DomainSpec, variable: str, annotations: dict[str, FormAnnotations]
) -> None:
    for source in spec.sources:
        form = study.forms.get(source.form or "")
        if form is None:
            continue
        for entry in source.transpose:
            test = next(
                ((key, value) for key, value in entry.values.items() if key.endswith("TESTCD")),
                next(iter(entry.values.items()), None),
            )
            text = variable if test is None else f"{variable} when {test[0]} = {test[1]}"
            for found_form, item in _resolve(study, entry.item, [form]):
                annotations[found_form.oid].add(item.oid, Annotation(spec.domain, text))


def _named_items(
    study: Study, value: Any, form: FormDef | None
) -> Iterator[tuple[str, FormDef | None]]:
    """The item references in derivation arguments, with the form a bare name belongs to
    (None: the record source's)."""
    if isinstance(value, str):
        yield value, form
    elif isinstance(value, list | tuple):
        for element in value:
            yield from _named_items(study, element, form)
    elif isinstance(value, dict):
        named = study.form_by_name(str(value.get("form", "")))
        inner = named or form
        for key, element in value.items():
            if key == "form":
                continue
            keyed = study.form_by_name(str(key))
            yield from _named_items(study, element, keyed or inner)


def _resolve(study: Study, reference: str, forms: list[FormDef]) -> list[tuple[FormDef, ItemDef]]:
    """The form items a `FORM.ITEM` or `ITEM` reference names (a bare name in any of
    `forms`)."""
    if "." in reference:
        form_name, name = reference.split(".", 1)
        named = study.form_by_name(form_name)
        forms = [] if named is None else [named]
    else:
        name = reference
    found = [(form, find_item(form, name)) for form in forms]
    return [(form, pair[1]) for form, pair in found if pair is not None]

"""SDTM mapping specifications: one YAML file per domain in `exports/`, loaded and checked.

A mapping is data. It says, for one SDTM domain, which collected rows give its records
(`sources`), and for each variable in dataset order its metadata (label, type, core, role,
controlled terminology, origin) and exactly one source: a collected `item`, a `constant`, a
`recode` of a collected code, or a named `derivation` from the registry in `app.sdtm.derive`.
Supplemental qualifiers (SUPP--) and value-level metadata hints are described in the parent
domain's file. The format is documented in `exports/README.md`; `DM.yaml` is the worked example.

This module is the contract shared by the engine (`app.sdtm.build`), the domain mappings and
Define-XML (`app.exporters.define`); it changes only additively.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from app.sdtm.derive import registered_derivations
from app.sdtm.relationships import RelatedRecords
from app.sdtm.trial_fields import TRIAL_DESIGN_FIELDS, TrialDesignKind
from app.study.loader import Study, _read_yaml, find_item
from app.study.model import Definition, FormDef, ItemDef
from app.study.problems import Loc, Problem, SourceFile, StudyDefinitionError
from app.study.validation import follows_from, salvage, validation_problems

VARIABLE_NAME_PATTERN = r"^[A-Z][A-Z0-9]{0,7}$"
"""SAS XPORT v5 and SDTM: upper case, at most 8 characters."""
MAX_LABEL_LENGTH = 40
ITEM_REFERENCE_PATTERN = r"^(?:[A-Z][A-Z0-9_]*\.)?[A-Z][A-Z0-9_]*$"
"""`ITEM` (of the record's source row) or `FORM.ITEM` (any form of the subject)."""

VariableType = Literal["Char", "Num"]
Core = Literal["Req", "Exp", "Perm"]
Role = Literal[
    "Identifier",
    "Topic",
    "Grouping Qualifier",
    "Result Qualifier",
    "Synonym Qualifier",
    "Record Qualifier",
    "Variable Qualifier",
    "Timing",
    "Rule",
]
DomainClass = Literal[
    "Special-Purpose",
    "Interventions",
    "Events",
    "Findings",
    "Findings About",
    "Trial Design",
    "Relationship",
]


class CodeListRef(Definition):
    """Controlled terminology of a variable, from the CT version pinned in `forms/study.yaml`.

    The permitted values are `values`, or the codes of the study code list `study` (whose codes
    are CDISC submission values), or both (then `values` must all be codes of `study`)."""

    nci_code: str | None = Field(default=None, pattern=r"^C\d+$", description="NCI C-code")
    name: str | None = Field(default=None, description="CDISC code list name, e.g. Sex")
    study: str | None = Field(default=None, description="study code list OID, e.g. CL.SEX")
    values: tuple[str, ...] = Field(default=(), description="submission values")
    extensible: bool = False

    @model_validator(mode="after")
    def _has_values(self) -> CodeListRef:
        if self.study is None and not self.values:
            raise ValueError("a code list needs its submission values or a study code list")
        return self


class Origin(Definition):
    """Define-XML origin of a variable: Collected (with the eCRF form OID), Derived (with the
    method), Assigned (by the sponsor) or Protocol."""

    type: Literal["Collected", "Derived", "Assigned", "Protocol"]
    form: str | None = Field(default=None, description="eCRF form OID of a Collected variable")
    method: str | None = Field(default=None, description="how a Derived variable is computed")

    @model_validator(mode="after")
    def _complete(self) -> Origin:
        if self.type == "Collected" and self.form is None:
            raise ValueError("a Collected origin names its eCRF form (form: F.XX)")
        if self.type == "Derived" and not self.method:
            raise ValueError("a Derived origin describes its method (method: ...)")
        return self


def _normalise_origin(value: Any) -> Any:
    """Accept `origin: Assigned` as short for `origin: {type: Assigned}`."""
    return {"type": value} if isinstance(value, str) else value


class Recode(Definition):
    """A collected code turned into an SDTM value; a code missing from `map` gives no value
    (null), so every collected code must be listed (`study check` verifies it)."""

    item: str = Field(pattern=ITEM_REFERENCE_PATTERN)
    map: dict[str, str | None]


class DerivationCall(Definition):
    """A named derivation of `app.sdtm.derive` and its keyword arguments."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    args: dict[str, Any] = Field(default_factory=dict)


def _normalise_derivation(value: Any) -> Any:
    """Accept `derivation: study_day` as short for `derivation: {name: study_day}`."""
    return {"name": value} if isinstance(value, str) else value


class ValueSource(Definition):
    """Exactly one of `item`, `constant`, `recode`, `derivation` gives a value."""

    item: str | None = Field(default=None, pattern=ITEM_REFERENCE_PATTERN)
    constant: str | float | None = None
    recode: Recode | None = None
    derivation: DerivationCall | None = None

    _derivation = field_validator("derivation", mode="before")(_normalise_derivation)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ValueSource:
        given = [
            key
            for key in ("item", "constant", "recode", "derivation")
            if getattr(self, key) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source (item, constant, recode or derivation); got "
                + (", ".join(given) if given else "none")
            )
        return self


class Variable(ValueSource):
    """One SDTM variable of a domain, in dataset order."""

    name: str = Field(pattern=VARIABLE_NAME_PATTERN)
    label: str = Field(max_length=MAX_LABEL_LENGTH)
    type: VariableType
    core: Core
    role: Role
    codelist: CodeListRef | None = None
    origin: Origin
    length: int | None = Field(default=None, gt=0, le=200, description="declared length")
    format: str | None = Field(default=None, description="display format, e.g. ISO 8601")

    _origin = field_validator("origin", mode="before")(_normalise_origin)


class Supplemental(ValueSource):
    """A supplemental qualifier (SUPP-- record) of the parent domain's records; a null value
    gives no SUPP-- record."""

    qnam: str = Field(pattern=VARIABLE_NAME_PATTERN)
    qlabel: str = Field(max_length=MAX_LABEL_LENGTH)
    origin: Origin
    qeval: str | None = Field(default=None, description="evaluator, e.g. INVESTIGATOR")
    codelist: CodeListRef | None = None

    _origin = field_validator("origin", mode="before")(_normalise_origin)


class Transposition(Definition):
    """One record per item of a row (findings): the record's result comes from `item` and the
    `values` (e.g. {VSTESTCD: SYSBP, VSTEST: Systolic Blood Pressure}) are read by the
    `transposed` and `transposed_result` derivations."""

    item: str = Field(pattern=ITEM_REFERENCE_PATTERN)
    values: dict[str, str | float] = Field(default_factory=dict)
    keep_empty: bool = Field(
        default=False, description="keep a record when the item has no value (e.g. NOT DONE)"
    )


class RecordSource(Definition):
    """Where records come from. `subject: true` gives one record per subject (DM),
    `subject_elements: true` one per element the subject went through (SE),
    `subject_visits: true` one per dated visit (SV); `trial_design: TS` the study's
    trial-design records of that kind (TS, TA, TE, TV, TI), whose fields the variables read by
    `item`; otherwise each row of `item_group` (default: the form's first group) of every saved
    `form` gives a record (or one per `transpose` entry), optionally only rows whose items
    equal `where` values (`{ITEM: value}` or `{ITEM: [value, ...]}`, all must hold)."""

    subject: bool = False
    subject_elements: bool = False
    subject_visits: bool = False
    trial_design: TrialDesignKind | None = None
    form: str | None = None
    item_group: str | None = None
    where: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)
    transpose: tuple[Transposition, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> RecordSource:
        kinds = [
            self.subject, self.subject_elements, self.subject_visits,
            self.trial_design is not None, self.form is not None,
        ]  # fmt: skip
        if sum(kinds) != 1:
            raise ValueError(
                "a record source is one of `subject: true`, `subject_elements: true`, "
                "`subject_visits: true`, `trial_design` or a `form`"
            )
        if self.form is None and (self.item_group or self.where or self.transpose):
            raise ValueError("only a `form` source takes item_group, where or transpose")
        return self


class ValueLevel(Definition):
    """Value-level metadata hint for findings (Define-XML), per --TESTCD value."""

    testcd: str
    type: VariableType = "Num"
    units: tuple[str, ...] = ()
    codelist: CodeListRef | None = None
    label: str | None = None


class DomainSpec(Definition):
    """One domain's mapping: `exports/<DOMAIN>.yaml`."""

    domain: str = Field(pattern=r"^[A-Z]{2}$")
    label: str = Field(max_length=MAX_LABEL_LENGTH)
    class_: DomainClass = Field(alias="class")
    structure: str = Field(description="e.g. One record per subject")
    keys: tuple[str, ...] = Field(min_length=1, description="key variables, in sort order")
    sources: tuple[RecordSource, ...] = Field(min_length=1)
    variables: tuple[Variable, ...] = Field(min_length=1)
    supplemental: tuple[Supplemental, ...] = ()
    value_level: tuple[ValueLevel, ...] = ()
    relrec: tuple[RelatedRecords, ...] = ()

    model_config = Definition.model_config | {"populate_by_name": True}

    def variable(self, name: str) -> Variable | None:
        return next((var for var in self.variables if var.name == name), None)

    @property
    def trial_design(self) -> TrialDesignKind | None:
        """The kind of trial-design records the domain holds (TS, TA, ...), or None."""
        return next((s.trial_design for s in self.sources if s.trial_design), None)

    @property
    def seq_name(self) -> str:
        return f"{self.domain}SEQ"

    @property
    def supp_name(self) -> str:
        return f"SUPP{self.domain}"


@dataclass(frozen=True)
class SdtmSpecs:
    """Every domain mapping of a study, in file-name order, with the parsed sources for
    located problems."""

    domains: tuple[DomainSpec, ...]
    sources: dict[str, SourceFile] = field(repr=False, default_factory=dict)
    """Domain -> the YAML file it was read from."""

    def domain(self, name: str) -> DomainSpec | None:
        """The mapping of a domain, or RELREC's description when a mapping declares it."""
        return next((spec for spec in self.with_relrec if spec.domain == name), None)

    @property
    def with_relrec(self) -> tuple[DomainSpec, ...]:
        """The domains, then RELREC when any declares related records (`app.sdtm.relrec`)."""
        from app.sdtm.relrec import RELREC_SPEC  # relrec builds on this module

        return (*self.domains, RELREC_SPEC) if any(s.relrec for s in self.domains) else self.domains


def load_sdtm_specs(directory: Path, study: Study) -> SdtmSpecs:
    """Load every `<DOMAIN>.yaml` of `directory` and check it against the study; raises
    StudyDefinitionError listing every problem (file, line, location, what), each once. A
    mapping with schema errors is checked against the study as far as it could be read."""
    specs, problems, left_out = _parse(directory)
    problems += [p for p in check_specs(specs, study) if not follows_from(p, left_out)]
    if problems:
        raise StudyDefinitionError(list(dict.fromkeys(problems)))
    return specs


def sdtm_problems(directory: Path, study: Study) -> list[Problem]:
    """Every problem of the mappings in `directory`; empty when they are usable."""
    try:
        load_sdtm_specs(directory, study)
    except StudyDefinitionError as error:
        return error.problems
    return []


def _parse(directory: Path) -> tuple[SdtmSpecs, list[Problem], set[str]]:
    problems: list[Problem] = []
    left_out: set[str] = set()
    if not directory.is_dir():
        return SdtmSpecs(()), [Problem(str(directory), None, "", "is not a folder")], left_out
    domains: list[DomainSpec] = []
    sources: dict[str, SourceFile] = {}
    for path in sorted(directory.glob("*.yaml")):
        source, data, problem = _read_yaml(path, directory)
        if problem is not None:
            problems.append(problem)
            continue
        try:
            spec = DomainSpec.model_validate(data)
        except ValidationError as error:
            problems.extend(validation_problems(source, DomainSpec, data, error))
            salvaged = salvage(DomainSpec, data, error)
            left_out.update(salvaged.left_out)
            if salvaged.model is None:
                continue
            spec, source = salvaged.model, source.without(salvaged.removed)
        if spec.domain in sources:
            problems.append(
                source.problem(
                    ("domain",),
                    f"domain {spec.domain} is already mapped in {sources[spec.domain].display}",
                )
            )
            continue
        if path.stem != spec.domain:
            problems.append(
                source.problem(
                    ("domain",), f"file of domain {spec.domain} must be named {spec.domain}.yaml"
                )
            )
        domains.append(spec)
        sources[spec.domain] = source
    return SdtmSpecs(tuple(domains), sources), problems, left_out


def check_specs(specs: SdtmSpecs, study: Study) -> list[Problem]:
    """Checks that need the study and the derivation registry (see `exports/README.md`)."""
    from app.sdtm.relrec import relrec_problems  # relrec builds on this module

    problems: list[Problem] = []
    for spec in specs.domains:
        problems += _DomainChecker(spec, study, specs.sources[spec.domain]).run()
    return problems + relrec_problems(specs, study)


def resolve_item(study: Study, reference: str, form: FormDef | None) -> ItemDef | None:
    """The item an `ITEM` (of the source `form`) or `FORM.ITEM` reference names, or None."""
    if "." in reference:
        form_name, item_name = reference.split(".", 1)
        form = study.form_by_name(form_name)
    else:
        item_name = reference
    found = None if form is None else find_item(form, item_name)
    return None if found is None else found[1]


def codelist_values(study: Study, codelist: CodeListRef) -> tuple[str, ...]:
    """The submission values a variable may take."""
    if codelist.values:
        return codelist.values
    study_list = study.codelists.get(codelist.study or "")
    return () if study_list is None else study_list.codes


class _DomainChecker:
    def __init__(self, spec: DomainSpec, study: Study, source: SourceFile) -> None:
        self.spec = spec
        self.study = study
        self.source = source
        self.problems: list[Problem] = []
        self.derivations = registered_derivations()
        self.source_forms = [
            study.forms[record_source.form]
            for record_source in spec.sources
            if record_source.form is not None and record_source.form in study.forms
        ]

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(self.source.problem(loc, message))

    def run(self) -> list[Problem]:
        for i, record_source in enumerate(self.spec.sources):
            self.check_record_source(("sources", i), record_source)
        names: dict[str, int] = {}
        for i, variable in enumerate(self.spec.variables):
            loc: Loc = ("variables", i)
            if variable.name in names:
                self.add((*loc, "name"), f"duplicate variable {variable.name}")
            names.setdefault(variable.name, i)
            self.check_value_source(loc, variable, variable.codelist)
            self.check_variable(loc, variable)
            self.check_origin((*loc, "origin"), variable.origin)
        for i, key in enumerate(self.spec.keys):
            if key not in names:
                self.add(("keys", i), f"key {key} is not a variable of {self.spec.domain}")
        qnams: set[str] = set()
        for i, supplemental in enumerate(self.spec.supplemental):
            loc = ("supplemental", i)
            if supplemental.qnam in qnams:
                self.add((*loc, "qnam"), f"duplicate QNAM {supplemental.qnam}")
            qnams.add(supplemental.qnam)
            self.check_value_source(loc, supplemental, supplemental.codelist)
            self.check_origin((*loc, "origin"), supplemental.origin)
        return self.problems

    def check_record_source(self, loc: Loc, record_source: RecordSource) -> None:
        if record_source.form is None:
            return
        form = self.study.forms.get(record_source.form)
        if form is None:
            self.add((*loc, "form"), f"unknown form {record_source.form}")
            return
        groups = [group.oid for group in form.item_groups]
        if record_source.item_group is not None and record_source.item_group not in groups:
            self.add(
                (*loc, "item_group"),
                f"form {form.oid} has no item group {record_source.item_group} "
                f"(it has {', '.join(groups)})",
            )
        for name in record_source.where:
            if find_item(form, name) is None:
                self.add((*loc, "where", name), f"form {form.oid} has no item {name}")
        for i, entry in enumerate(record_source.transpose):
            self.check_item((*loc, "transpose", i, "item"), entry.item, form)

    def check_item(self, loc: Loc, reference: str, form: FormDef | None = None) -> ItemDef | None:
        """The item `FORM.ITEM` names, or that `ITEM` names in `form` (default: in any of the
        record sources' forms, since a domain fed by several forms reads some items from one
        of them only); a problem when there is none."""
        kind = self.spec.trial_design
        if kind is not None:
            if reference not in TRIAL_DESIGN_FIELDS[kind]:
                fields = ", ".join(TRIAL_DESIGN_FIELDS[kind])
                self.add(loc, f"{kind} records have no field {reference} (they have {fields})")
            return None
        forms = [form] if form is not None or "." in reference else self.source_forms
        found = [resolve_item(self.study, reference, source) for source in forms or [None]]
        item = next((item for item in found if item is not None), None)
        if item is None:
            names = ", ".join(source.oid for source in forms if source is not None)
            self.add(loc, f"unknown item {reference}" + (f" (forms {names})" if names else ""))
        return item

    def check_value_source(
        self, loc: Loc, value_source: ValueSource, codelist: CodeListRef | None
    ) -> None:
        allowed = set(codelist_values(self.study, codelist)) if codelist else None
        if codelist is not None:
            self.check_codelist((*loc, "codelist"), codelist)
        if value_source.item is not None:
            item = self.check_item((*loc, "item"), value_source.item)
            study_list = self.study.codelists.get(item.codelist or "") if item else None
            closed = allowed if codelist is not None and not codelist.extensible else None
            if study_list is not None and closed is not None:
                # every code the site can pick must be a value of the SDTM code list
                self.check_values((*loc, "item"), study_list.codes, closed)
        if isinstance(value_source.constant, str) and allowed is not None:
            self.check_values((*loc, "constant"), (value_source.constant,), allowed)
        if value_source.recode is not None:
            self.check_recode((*loc, "recode"), value_source.recode, allowed)
        if value_source.derivation is not None:
            self.check_derivation((*loc, "derivation"), value_source.derivation)
        if self.spec.trial_design and (value_source.derivation or value_source.recode):
            key = "derivation" if value_source.derivation else "recode"
            self.add(
                (*loc, key), "a trial-design variable reads a field of its record or is constant"
            )

    def check_values(self, loc: Loc, values: Iterable[str], allowed: set[str]) -> None:
        for value in values:
            if value not in allowed:
                self.add(loc, f"{value!r} is not a value of its code list")

    def check_codelist(self, loc: Loc, codelist: CodeListRef) -> None:
        if codelist.study is None:
            return
        study_list = self.study.codelists.get(codelist.study)
        if study_list is None:
            self.add((*loc, "study"), f"unknown study code list {codelist.study}")
            return
        for i, value in enumerate(codelist.values):
            if value not in study_list.codes:
                self.add((*loc, "values", i), f"{value!r} is not a code of {codelist.study}")

    def check_recode(self, loc: Loc, recode: Recode, allowed: set[str] | None) -> None:
        item = self.check_item((*loc, "item"), recode.item)
        study_list = self.study.codelists.get(item.codelist or "") if item else None
        if study_list is not None:
            for code in recode.map:
                if code not in study_list.codes:
                    self.add((*loc, "map", code), f"{code!r} is not a code of {study_list.oid}")
            for code in study_list.codes:
                if code not in recode.map:
                    self.add((*loc, "map"), f"code {code!r} of {study_list.oid} is not mapped")
        if allowed is not None:
            targets = [value for value in recode.map.values() if value is not None]
            self.check_values((*loc, "map"), targets, allowed)

    def check_derivation(self, loc: Loc, call: DerivationCall) -> None:
        function = self.derivations.get(call.name)
        if function is None:
            self.add((*loc, "name"), f"unknown derivation {call.name!r}")
            return
        try:
            inspect.signature(function).bind(None, **call.args)
        except TypeError as error:
            self.add((*loc, "args"), f"derivation {call.name}: {error}")

    def check_variable(self, loc: Loc, variable: Variable) -> None:
        if variable.type == "Num" and isinstance(variable.constant, str):
            self.add((*loc, "constant"), f"Num variable {variable.name} has a text constant")
        if not variable.name.startswith(self.spec.domain) and variable.name.endswith("SEQ"):
            self.add((*loc, "name"), f"sequence variable must be {self.spec.seq_name}")

    def check_origin(self, loc: Loc, origin: Origin) -> None:
        if origin.form is not None and origin.form not in self.study.forms:
            self.add((*loc, "form"), f"unknown form {origin.form}")

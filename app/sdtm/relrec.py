"""RELREC (SDTMIG 3.4 §8.2): the related records the mappings declare (`relrec:`, see
`app.sdtm.relationships`), built while the engine builds each subject's domains.

Record-level relationships relate a record to the records its source row cites (a CRS
episode's CE record and the AE record whose AESPID its CRSAEID names): the cited records and
the records of one saved form citing them share a RELID (every DD record of a death form
and its AE), numbered 1, 2, ... per subject in the order of the citing records; every record
is identified by its --SEQ. Dataset-level relationships (FA to CE by FAGRPID = CESPID) are
two records without USUBJID, written once when both domains have records. `RELREC_SPEC`
describes the dataset for Define-XML and the rule checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.sdtm.dataset import Column, Table
from app.sdtm.derive import RecordContext, SubjectInfo, Value
from app.sdtm.domain_derivations import first_value
from app.sdtm.relationships import RelatedRecords
from app.sdtm.spec import CodeListRef, Core, DomainSpec, Origin, Role, SdtmSpecs, Variable
from app.study.loader import Study, find_item
from app.study.problems import Problem

RELREC = "RELREC"


def _variable(
    name: str,
    label: str,
    core: Core,
    length: int,
    origin: Origin,
    role: Role = "Identifier",
    codelist: CodeListRef | None = None,
) -> Variable:
    # built without a value source: RELREC's values come from this module, not a mapping
    return Variable.model_construct(
        name=name, label=label, type="Char", core=core, role=role, origin=origin,
        length=length, codelist=codelist,
    )  # fmt: skip


_ASSIGNED = Origin(type="Assigned")
RELREC_SPEC = DomainSpec.model_construct(
    domain=RELREC,
    label="Related Records",
    class_="Relationship",
    structure="One record per related record, group of records or dataset",
    keys=("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "RELID"),
    sources=(),
    variables=(
        _variable("STUDYID", "Study Identifier", "Req", 20, Origin(type="Protocol")),
        _variable("RDOMAIN", "Related Domain Abbreviation", "Req", 2, _ASSIGNED),
        _variable("USUBJID", "Unique Subject Identifier", "Exp", 40,
                  Origin(type="Derived", method="USUBJID of the related record; null for a "
                         "dataset-level relationship")),
        _variable("IDVAR", "Identifying Variable", "Req", 8, _ASSIGNED),
        _variable("IDVARVAL", "Identifying Variable Value", "Exp", 20,
                  Origin(type="Derived", method="Value of IDVAR in the related record; null "
                         "for a dataset-level relationship")),
        _variable("RELTYPE", "Relationship Type", "Exp", 4, _ASSIGNED, role="Record Qualifier",
                  codelist=CodeListRef(nci_code="C78737", name="Relationship Type",
                                       values=("ONE", "MANY"))),
        _variable("RELID", "Relationship Identifier", "Req", 20,
                  Origin(type="Derived", method="Number of the relationship within the "
                         "subject (1, 2, ...); DOMAIN-DOMAIN for a dataset-level one")),
    ),
    supplemental=(),
    value_level=(),
    relrec=(),
)  # fmt: skip
"""RELREC's variables in dataset order, as Define-XML and the rule checks read a mapping."""

COLUMNS = [
    Column(var.name, var.label, "Char", "string", RELREC_SPEC.keys.index(var.name) + 1
           if var.name in RELREC_SPEC.keys else None)
    for var in RELREC_SPEC.variables
]  # fmt: skip


def relrec_problems(specs: SdtmSpecs, study: Study) -> list[Problem]:
    """Every `relrec` declaration names a mapped domain, source forms of its own domain and
    items of those forms, and variables of the two domains (--SEQ for record-level ones)."""
    problems: list[Problem] = []
    for spec in specs.domains:
        source_file = specs.sources.get(spec.domain)
        if source_file is None:
            continue
        for i, related in enumerate(spec.relrec):
            problems += [
                source_file.problem(("relrec", i, *where), message)
                for where, message in _declaration_problems(specs, study, spec, related)
            ]
    return problems


def _declaration_problems(
    specs: SdtmSpecs, study: Study, spec: DomainSpec, related: RelatedRecords
) -> list[tuple[tuple[str, ...], str]]:
    other = specs.domain(related.with_)
    if other is None or other.domain == RELREC:
        return [(("with",), f"no mapping of {related.with_}")]
    problems: list[tuple[tuple[str, ...], str]] = []
    forms = {
        study.forms[s.form].name: study.forms[s.form]
        for s in spec.sources
        if s.form is not None and s.form in study.forms
    }
    for name, item in related.item.items():
        form = forms.get(name)
        if form is None:
            problems.append((("item", name), f"{name} is not a source form of {spec.domain}"))
        elif find_item(form, item) is None:
            problems.append((("item", name), f"form {form.oid} has no item {item}"))
    wanted = [(spec, name) for name in related.dataset]
    wanted += [(other, name) for name in related.dataset.values()]
    if related.matches is not None:
        wanted += [(other, related.matches), (spec, spec.seq_name), (other, other.seq_name)]
    problems += [
        ((), f"{name} is not a variable of {domain.domain}")
        for domain, name in wanted
        if domain.variable(name) is None
    ]
    return problems


def _same_id(value: Value, cited: str) -> bool:
    return isinstance(value, str) and value.strip().upper() == cited.strip().upper()


class RelrecBuilder:
    """Builds RELREC subject by subject from the records of each domain."""

    def __init__(self, specs: SdtmSpecs) -> None:
        self.declared = [(spec, related) for spec in specs.domains for related in spec.relrec]
        self.table = Table(RELREC, RELREC_SPEC.label, list(COLUMNS))
        self.dataset_level: dict[int, tuple[str, str, str, str]] = {}
        """Declaration index -> (domain, variable, related domain, its variable), once seen."""

    def add_subject(
        self, subject: SubjectInfo, records: Mapping[str, Sequence[RecordContext]]
    ) -> None:
        """Relate the subject's records (the record contexts of each domain, by domain)."""
        relids: dict[tuple[object, ...], str] = {}
        for index, (spec, related) in enumerate(self.declared):
            citing, cited = records.get(spec.domain, ()), records.get(related.with_, ())
            if related.dataset:
                if citing and cited:
                    ((mine, theirs),) = related.dataset.items()
                    self.dataset_level[index] = (spec.domain, mine, related.with_, theirs)
                continue
            for context in citing:
                row = context.row
                item = related.item.get(row.form_name) if row is not None else None
                number = first_value(context, (item,)) if row is not None and item else None
                if row is None or number is None:
                    continue
                targets = [t for t in cited if _same_id(t.record.get(related.matches or ""),
                                                        number)]  # fmt: skip
                if not targets:
                    continue
                # the records of one saved form citing the same records are one relationship
                key = (index, row.form_oid, row.event_oid, row.event_repeat, row.form_repeat,
                       tuple(t.seq for t in targets))  # fmt: skip
                if key not in relids:
                    relids[key] = str(len(relids) + 1)
                    for target in targets:
                        self._add(subject, related.with_, target.seq, relids[key])
                self._add(subject, spec.domain, context.seq, relids[key])

    def _add(self, subject: SubjectInfo, domain: str, seq: int, relid: str) -> None:
        self.table.rows.append(
            [subject.studyid, domain, subject.usubjid, f"{domain}SEQ", str(seq), None, relid]
        )

    def finish(self, studyid: str) -> Table:
        """The table, with the dataset-level relationships seen in any subject."""
        for domain, variable, other, other_variable in self.dataset_level.values():
            relid = f"{domain}-{other}"
            self.table.rows.append([studyid, other, None, other_variable, None, "ONE", relid])
            self.table.rows.append([studyid, domain, None, variable, None, "MANY", relid])
        return self.table

"""The SDTM engine: builds every domain of `exports/` for the subjects in scope and writes them.

Subjects are read one at a time (`scoped_subjects`), with all of a subject's collected values
in one query, so memory holds one subject's data plus the records built so far. For each
subject DM is built first: its RFSTDTC is the reference date of every `--DY`. Records of a
domain are numbered (`--SEQ`) in the creation order of their source rows, which does not
change when data are edited, so a re-export gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.exporters.scope import (
    ExportScope,
    Progress,
    no_progress,
    scoped_subject_ids,
    scoped_subjects,
)
from app.models import AuditRecord, FormData, ItemData, ItemGroupData, Site, StudyEventData, Subject
from app.sdtm import (  # noqa: F401 - imported for the derivations they register
    domain_derivations,
    subject_derivations,
)
from app.sdtm.conformance import submitted
from app.sdtm.dataset import Column, JsonDataType, SdtmDataset, Table, format_number
from app.sdtm.derive import (
    REFERENCE_START,
    DerivationFunction,
    RecordContext,
    RowValues,
    SubjectData,
    SubjectInfo,
    Value,
    registered_derivations,
)
from app.sdtm.relrec import RelrecBuilder
from app.sdtm.spec import (
    DomainSpec,
    RecordSource,
    SdtmSpecs,
    Transposition,
    ValueSource,
    Variable,
    resolve_item,
)
from app.sdtm.subject_elements import recorded_elements
from app.sdtm.subject_visits import read_visits, visit_rows
from app.sdtm.trial_design import trial_design_table
from app.sdtm.writers import (
    MAX_VALUE_BYTES,
    long_text_pieces,
    supp_qlabel,
    supp_qnam,
    write_tables,
)
from app.study.loader import Study
from app.study.model import DataType

__all__ = ["SdtmBuildError", "SdtmDataset", "build_tables", "write_sdtm"]

REFERENCE_DOMAIN = "DM"
ALL_FORMATS = frozenset({"xpt", "json", "csv"})
INTEGER_DERIVATIONS = frozenset(
    {"seq", "study_day", "planned_study_day", "element", "element_order"}
)
"""Num variables computed by these derivations are integers (Dataset-JSON `integer`)."""

SUPP_COLUMNS = [
    Column("STUDYID", "Study Identifier", "Char", "string", 1),
    Column("RDOMAIN", "Related Domain Abbreviation", "Char", "string", 2),
    Column("USUBJID", "Unique Subject Identifier", "Char", "string", 3),
    Column("IDVAR", "Identifying Variable", "Char", "string", 4),
    Column("IDVARVAL", "Identifying Variable Value", "Char", "string", 5),
    Column("QNAM", "Qualifier Variable Name", "Char", "string", 6),
    Column("QLABEL", "Qualifier Variable Label", "Char", "string"),
    Column("QVAL", "Data Value", "Char", "string"),
    Column("QORIG", "Origin", "Char", "string"),
    Column("QEVAL", "Evaluator", "Char", "string"),
]

Compute = Callable[[RecordContext], Value]


class SdtmBuildError(Exception):
    """A collected value that cannot become its SDTM variable (e.g. text in a Num variable);
    the message names the subject, the variable and the value."""


def write_sdtm(
    session: Session,
    study: Study,
    specs: SdtmSpecs,
    out_dir: Path,
    scope: ExportScope | None = None,
    formats: frozenset[str] = ALL_FORMATS,
    progress: Progress = no_progress,
    written: Progress = no_progress,
) -> list[SdtmDataset]:
    """Build every domain of `specs` (and its SUPP--) for the subjects in `scope` (default:
    the whole study) and write
    each to `out_dir` as `<name>.xpt`, `<name>.json`, `<name>.csv` (the `formats` asked for).
    `progress` is told the subjects read, `written` the datasets written.

    Datasets without records are not written. SDTM is always complete for its scope: `scope.changed_since` is ignored.
    Raises SdtmBuildError or `writers.SdtmWriteError` before anything is half written."""
    unknown = formats - ALL_FORMATS
    if unknown:
        raise ValueError(f"unknown SDTM formats: {', '.join(sorted(unknown))}")
    tables = build_tables(session, study, specs, scope, progress)
    return write_tables(tables, study, out_dir, formats, last_modified(session), written)


def build_tables(
    session: Session,
    study: Study,
    specs: SdtmSpecs,
    scope: ExportScope | None = None,
    progress: Progress = no_progress,
) -> list[Table]:
    """Every domain of `specs` that has records, in file order, each followed by its SUPP--
    dataset when that has records (supplemental qualifiers or text split over 200
    characters), as submitted (`conformance.submitted`: sorted by keys, permissible
    variables null in every row dropped)."""
    derivations = registered_derivations()
    subject_specs = [spec for spec in specs.domains if spec.trial_design is None]
    builders = [_DomainBuilder(spec, study, derivations) for spec in subject_specs]
    reference_first = sorted(builders, key=lambda builder: builder.spec.domain != REFERENCE_DOMAIN)
    reader = _SubjectReader(session, study)
    scope = scope or ExportScope(study_id=study.id)
    total = len(scoped_subject_ids(session, scope))
    relationships = RelrecBuilder(specs) if any(spec.relrec for spec in specs.domains) else None
    for done, subject in enumerate(scoped_subjects(session, scope), start=1):
        data = reader.read(subject)
        reference_start: str | None = None
        for builder in reference_first:
            first = builder.add_subject(data, reference_start)
            if builder.spec.domain == REFERENCE_DOMAIN and first is not None:
                value = first.get(REFERENCE_START)
                reference_start = value if isinstance(value, str) else None
        if relationships is not None:
            relationships.add_subject(data.subject, {b.spec.domain: b.contexts for b in builders})
        progress(done, total)
    tables: list[Table] = []
    by_domain = {builder.spec.domain: builder for builder in builders}
    for spec in specs.domains:
        permissible = [var.name for var in spec.variables if var.core == "Perm"]
        if spec.trial_design is not None:
            built = [trial_design_table(session, study, specs, spec)]
        else:
            builder = by_domain[spec.domain]
            built = [builder.table, builder.supp]
        for table in (submitted(built[0], permissible), *map(submitted, built[1:])):
            if table is not None:
                tables.append(table)
    if relationships is not None:
        related = submitted(relationships.finish(study.info.oid))
        tables += [related] if related is not None else []
    return tables


# -- reading a subject ---------------------------------------------------------------------


_ROW_COLUMNS = (
    *(col(c) for c in (ItemGroupData.id, ItemGroupData.item_group_oid, ItemGroupData.repeat_key)),
    *(col(c) for c in (FormData.form_oid, FormData.repeat_key)),
    *(col(c) for c in (StudyEventData.event_oid, StudyEventData.repeat_key)),
    col(StudyEventData.visit_date),
    col(ItemData.item_oid),
    col(ItemData.value),
)
"""One subject's item values with their group repeat, form and event, in creation order."""


class _SubjectReader:
    """Reads one subject's collected rows with a single query."""

    def __init__(self, session: Session, study: Study) -> None:
        self.session = session
        self.study = study
        sites = session.exec(select(Site).where(Site.study_id == study.id))
        self.sites = {site.id: site.number for site in sites}
        self.item_names = {
            item.oid: item.name
            for form in study.forms.values()
            for group in form.item_groups
            for item in group.items
        }
        self.form_names = {form.oid: form.name for form in study.forms.values()}

    def read(self, subject: Subject) -> SubjectData:
        statement = (
            sa_select(*_ROW_COLUMNS)
            .select_from(StudyEventData)
            .join(FormData, col(FormData.study_event_id) == col(StudyEventData.id))
            .join(ItemGroupData, col(ItemGroupData.form_data_id) == col(FormData.id))
            .join(ItemData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
            .where(col(StudyEventData.subject_id) == subject.id)
            .where(col(ItemData.value).is_not(None))
            .order_by(col(ItemGroupData.id))
        )
        rows: list[RowValues] = []
        current: dict[str, str] = {}
        last_id = None
        for (
            group_id,
            group_oid,
            group_repeat,
            form_oid,
            form_repeat,
            event_oid,
            event_repeat,
            visit_date,
            item_oid,
            value,
        ) in self.session.execute(statement):
            if group_id != last_id:
                current = {}
                last_id = group_id
                rows.append(
                    RowValues(
                        form_oid=form_oid,
                        form_name=self.form_names.get(form_oid, form_oid),
                        event_oid=event_oid,
                        event_repeat=event_repeat,
                        form_repeat=form_repeat,
                        item_group_oid=group_oid,
                        group_repeat=group_repeat,
                        visit_date=visit_date,
                        values=current,
                        order=group_id,
                    )
                )
            if item_oid in self.item_names and value != "":
                current[self.item_names[item_oid]] = value
        studyid = self.study.info.oid
        info = SubjectInfo(
            studyid=studyid,
            subjid=subject.subject_key,
            usubjid=f"{studyid}-{subject.subject_key}",
            siteid=self.sites.get(subject.site_id, str(subject.site_id)),
            dose_level=subject.dose_level,
            phase=subject.phase,
            status=subject.status,
        )
        data = SubjectData(subject=info, rows=tuple(rows), anchors={}, study=self.study)
        anchors = {
            anchor.id: value
            for anchor in self.study.schedule.anchors
            if (value := data.first(anchor.source)) is not None
        }
        visits = read_visits(self.session, subject.id or 0)
        return SubjectData(info, tuple(rows), anchors, self.study, visits)


def last_modified(session: Session) -> datetime:
    """When the clinical data last changed: the latest audit record (now if there is none)."""
    latest = session.exec(select(func.max(AuditRecord.occurred_at))).one()
    if latest is None:
        return datetime.now(UTC)
    return latest if latest.tzinfo else latest.replace(tzinfo=UTC)


# -- building one domain ---------------------------------------------------------------------


class _DomainBuilder:
    """Builds the records of one domain and its SUPP-- records, subject by subject."""

    def __init__(
        self, spec: DomainSpec, study: Study, derivations: Mapping[str, DerivationFunction]
    ) -> None:
        self.spec = spec
        self.study = study
        keys = {name: i for i, name in enumerate(spec.keys, start=1)}
        self.table = Table(
            spec.domain,
            spec.label,
            [
                Column(
                    var.name,
                    var.label,
                    var.type,
                    json_data_type(var, study, spec),
                    keys.get(var.name),
                )
                for var in spec.variables
            ],
        )
        self.supp = Table(
            spec.supp_name, f"Supplemental Qualifiers for {spec.domain}", list(SUPP_COLUMNS)
        )
        source_forms = {study.forms[s.form].name for s in spec.sources if s.form is not None}
        self.names = [var.name for var in spec.variables]
        self.computes = {
            var.name: _typed_compute(
                f"{spec.domain}.{var.name}", var.type, _compiler(var, derivations, source_forms)
            )
            for var in spec.variables
        }
        self.qualifiers = [
            (qual, _typed_compute(f"{spec.supp_name}.{qual.qnam}", "Char",
                                  _compiler(qual, derivations, source_forms)))
            for qual in spec.supplemental
        ]  # fmt: skip
        self.has_seq = spec.variable(spec.seq_name) is not None
        self.char_variables = [var for var in spec.variables if var.type == "Char"]
        self.contexts: list[RecordContext] = []
        """The records of the subject last added (RELREC relates them)."""

    def add_subject(
        self, data: SubjectData, reference_start: str | None
    ) -> dict[str, Value] | None:
        """Append the subject's records; return the first one (DM's record)."""
        first = None
        self.contexts = []
        candidates = sorted(self._candidates(data), key=lambda entry: entry[0])
        for seq, (_order, row, transposition) in enumerate(candidates, start=1):
            context = RecordContext(
                study=self.study,
                data=data,
                domain=self.spec.domain,
                row=row,
                seq=seq,
                transposed_item=transposition.item if transposition else None,
                transposed_values=transposition.values if transposition else {},
                reference_start=reference_start,
                computes=self.computes,
            )
            record = self._record(context)
            self.contexts.append(context)
            if first is None:
                first = record
            self._add_supplemental(context)
        return first

    def _candidates(
        self, data: SubjectData
    ) -> Iterator[tuple[tuple[int, int], RowValues | None, Transposition | None]]:
        """(order key, source row, transposition) of every record of the subject."""
        for source in self.spec.sources:
            if source.subject:
                yield (0, 0), None, None
                continue
            if source.subject_elements:  # in start order: SESEQ k is the k-th element
                yield from (((0, i), None, None) for i, _ in enumerate(recorded_elements(data)))
                continue
            if source.subject_visits:
                yield from (((row.order, 0), row, None) for row in visit_rows(data))
                continue
            for row in self._rows(data, source):
                if not source.transpose:
                    yield (row.order, 0), row, None
                    continue
                for i, entry in enumerate(source.transpose):
                    if entry.keep_empty or data.value(entry.item, row) is not None:
                        yield (row.order, i), row, entry

    def _rows(self, data: SubjectData, source: RecordSource) -> Iterator[RowValues]:
        form = self.study.forms[source.form or ""]
        group = source.item_group or form.item_groups[0].oid
        for row in data.rows_of(form.name):
            if row.item_group_oid != group:
                continue
            if all(_matches(row.values.get(item), wanted) for item, wanted in source.where.items()):
                yield row

    def _record(self, context: RecordContext) -> dict[str, Value]:
        record = context.record
        self.table.rows.append([context.variable(name) for name in self.names])
        for variable in self.char_variables:
            value = record[variable.name]
            if isinstance(value, str) and len(value) > MAX_VALUE_BYTES:
                pieces = long_text_pieces(value)
                self.table.rows[-1][self.table.index(variable.name)] = pieces[0]
                for i, piece in enumerate(pieces[1:], start=1):
                    qnam, qlabel = supp_qnam(variable.name, i), supp_qlabel(variable.label, i)
                    self._append_supp(context, qnam, qlabel, piece, variable.origin.type, None)
        return record

    def _add_supplemental(self, context: RecordContext) -> None:
        for qualifier, compute in self.qualifiers:
            value = compute(context)
            if value is None:
                continue
            assert isinstance(value, str)
            for i, piece in enumerate(long_text_pieces(value)):
                qnam = qualifier.qnam if i == 0 else supp_qnam(qualifier.qnam, i)
                qlabel = qualifier.qlabel if i == 0 else supp_qlabel(qualifier.qlabel, i)
                self._append_supp(
                    context, qnam, qlabel, piece, qualifier.origin.type, qualifier.qeval
                )

    def _append_supp(
        self,
        context: RecordContext,
        qnam: str,
        qlabel: str,
        qval: str,
        qorig: str,
        qeval: str | None,
    ) -> None:
        idvar = self.spec.seq_name if self.has_seq else None
        idvarval = str(context.seq) if self.has_seq else None
        subject = context.subject
        self.supp.rows.append(
            [subject.studyid, self.spec.domain, subject.usubjid, idvar, idvarval, qnam, qlabel,
             qval, qorig, qeval]
        )  # fmt: skip


def _matches(value: str | None, wanted: str | tuple[str, ...]) -> bool:
    return value in wanted if isinstance(wanted, tuple) else value == wanted


def _compiler(
    source: ValueSource, derivations: Mapping[str, DerivationFunction], source_forms: set[str]
) -> Compute:
    """The function computing a variable's value from its one source."""
    if source.item is not None:
        return _item_reader(source.item, source_forms)
    if source.recode is not None:
        read, mapping = _item_reader(source.recode.item, source_forms), source.recode.map
        return lambda context: mapping.get(code) if (code := read(context)) else None
    if source.derivation is not None:
        function, args = derivations[source.derivation.name], source.derivation.args
        return lambda context: function(context, **args)
    constant = source.constant
    return lambda _context: constant


def _item_reader(reference: str, source_forms: set[str]) -> Callable[[RecordContext], str | None]:
    """Reads `ITEM` or `FORM.ITEM`. When FORM is one of the domain's record sources, only
    records from that form have the value (DS.DSLTFU is not a value of the consent record)."""
    form_name, _, item = reference.rpartition(".")
    if form_name in source_forms:
        return lambda context: (
            context.row.values.get(item)
            if context.row is not None and context.row.form_name == form_name
            else None
        )
    return lambda context: context.item(reference)


def _typed_compute(where: str, variable_type: str, compute: Compute) -> Compute:
    """`compute` giving the variable's type; a value that does not fit names the subject."""

    def typed(context: RecordContext) -> Value:
        try:
            return _typed(compute(context), variable_type)
        except (TypeError, ValueError) as error:
            raise SdtmBuildError(f"{context.subject.usubjid}: {where}: {error}") from error

    return typed


def _typed(value: Value, variable_type: str) -> Value:
    """A Num variable's value as a float, a Char variable's as text; empty text is null."""
    if value is None or value == "":
        return None
    if variable_type == "Num":
        return float(value)
    if isinstance(value, float):
        return format_number(value)
    return value


def json_data_type(variable: Variable, study: Study, spec: DomainSpec) -> JsonDataType:
    """Dataset-JSON dataType: string for Char; integer for --SEQ, --DY and integer items;
    double for other Num variables."""
    if variable.type == "Char":
        return "string"
    if variable.derivation is not None and variable.derivation.name in INTEGER_DERIVATIONS:
        return "integer"
    if variable.item is not None:
        forms = [study.forms[source.form] for source in spec.sources if source.form is not None]
        items = [resolve_item(study, variable.item, form) for form in forms] or [
            resolve_item(study, variable.item, None)
        ]
        if items and all(item is not None and item.type == DataType.INTEGER for item in items):
            return "integer"
    return "double"

"""Define-XML 2.1 describing TrialDesk's SDTM exports, and define.html rendered from it.

`write_define` describes the datasets `app.sdtm.build.write_sdtm` wrote: one ItemGroupDef per
dataset (its def:leaf names the data file), one ItemDef per variable with its origin from the
mapping in `exports/`, code lists, one MethodDef per derived variable, comments for constants,
and value-level metadata: the results of findings domains by --TESTCD and QVAL of SUPP--
datasets by QNAM. What only the data can tell is read from the written files: numeric lengths
and decimals, the ISO 8601 data type of each --DTC variable, and which tests and QNAMs occur.

Define-XML alone describes the datasets from the definition instead (`planned_datasets`), so
that it reads no subject's data and takes the same time for any number of subjects: each
text variable's length is the longest value the definition allows (its declared length, code
list, constant, recode, or the eCRF item it copies; 200, the SAS XPORT v5 limit, for derived
text), numbers are 8 long with no SignificantDigits, --DTC types are those of the items they
copy, only the tests and QNAMs the mappings name are listed, and no dataset says it has no
data.
OIDs are those the Dataset-JSON files carry (`app.sdtm.dataset`). The document is checked
against the vendored Define-XML 2.1 schema before it is written.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

from app.exporters.define_html import render_html
from app.schemas import DEFINE_STYLESHEET, define_schema
from app.sdtm.build import SUPP_COLUMNS, json_data_type
from app.sdtm.dataset import (
    SdtmDataset,
    Table,
    format_number,
    item_group_oid,
    item_oid,
    metadata_version_oid,
)
from app.sdtm.rules import read_written
from app.sdtm.spec import (
    CodeListRef,
    DomainSpec,
    Origin,
    SdtmSpecs,
    Supplemental,
    Variable,
    codelist_values,
    resolve_item,
)
from app.sdtm.writers import MAX_VALUE_BYTES, supp_qnam
from app.study.loader import Study
from app.study.model import DataType, ItemDef

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NS = "http://www.cdisc.org/ns/def/v2.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
XML_NS = "http://www.w3.org/XML/1998/namespace"
NSMAP: dict[Any, str] = {None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS}
"""Namespaces of the document: ODM as default (lxml types the prefix as text; None is the default)."""

DEFINE_XML = "define.xml"
DEFINE_HTML = "define.html"
STYLESHEET = DEFINE_STYLESHEET.name
SDTMIG_VERSION = "3.4"
SDTMIG_OID = "STD.SDTMIG.3.4"
CT_OID = "STD.CT.SDTM"
CRF_LEAF = "LF.CRF"
FILE_PREFERENCE = ("xpt", "json", "csv")
"""The file a dataset's def:leaf names: its SAS XPORT file, else Dataset-JSON, else CSV."""

CLASS_NAMES = {
    "Special-Purpose": "SPECIAL PURPOSE",
    "Interventions": "INTERVENTIONS",
    "Events": "EVENTS",
    "Findings": "FINDINGS",
    "Findings About": "FINDINGS ABOUT",
    "Trial Design": "TRIAL DESIGN",
    "Relationship": "RELATIONSHIP",
}
"""def:Class names (Define-XML 2.1 ItemGroupClass terminology) of the mapping classes."""

RESULT_SUFFIXES = ("ORRES", "ORRESU", "STRESC", "STRESN", "STRESU")
"""Variables of a findings domain described per test (value-level metadata)."""

SUPP_ORIGINS: dict[str, Origin] = {
    "RDOMAIN": Origin(type="Assigned"),
    "IDVAR": Origin(type="Assigned"),
    "IDVARVAL": Origin(type="Derived", method="Value of IDVAR in the parent record"),
    "QNAM": Origin(type="Assigned"),
    "QLABEL": Origin(type="Assigned"),
    "QORIG": Origin(type="Assigned"),
    "QEVAL": Origin(type="Assigned"),
}
"""Origins of the fixed SUPP-- variables; STUDYID and USUBJID have their parent domain's, and
QVAL's origin is given per QNAM."""

_ISO_PATTERNS = (
    ("date", re.compile(r"\d{4}-\d{2}-\d{2}")),
    ("datetime", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?")),
    ("partialDate", re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")),
    ("partialDatetime", re.compile(r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?)?)?")),
)
"""Define-XML data types of ISO 8601 values, narrowest first."""
_ISO_DATA_TYPES = (
    ("date", {"date"}),
    ("datetime", {"datetime"}),
    ("partialDate", {"date", "partialDate"}),
    ("partialDatetime", {"date", "datetime", "partialDate", "partialDatetime"}),
)
"""The data type of a variable whose values have the given types, narrowest first."""

_ITEM_ISO_TYPES = {
    DataType.DATE: "date",
    DataType.PARTIAL_DATE: "partialDate",
    DataType.DATETIME: "partialDatetime",
    DataType.TIME: "partialTime",
}
"""Data type of an always-empty --DTC variable read from a collected item (the eCRF collects
time to the minute, which Define-XML calls a partial datetime)."""

DISTINCT_LIMIT = 50
"""Distinct values kept per column (units, QLABEL); more are not worth listing."""


class DefineError(Exception):
    """The datasets cannot be described: a dataset without a mapping or data file, or a
    document the Define-XML schema rejects (a bug: the message names line and rule)."""


# -- what the data files hold -----------------------------------------------------------------


@dataclass
class ValueStats:
    """The shape of the values of one column (or of one column for one test or QNAM). The
    ISO 8601 types and whether every value is a number are tracked only when asked for."""

    iso: bool = False
    number: bool = False
    count: int = 0
    max_length: int = 0
    numeric: bool = True
    integral: bool = True
    max_decimals: int | None = 0
    """None: not known (a dataset described from the definition)."""
    iso_types: set[str] = field(default_factory=set)
    distinct: list[str] = field(default_factory=list)

    def tracking_the_same(self) -> ValueStats:
        """Empty statistics that track what these do."""
        return ValueStats(iso=self.iso, number=self.number)

    def add(self, text: str) -> None:
        self.count += 1
        self.max_length = max(self.max_length, len(text.encode()))
        _whole, point, decimals = text.partition(".")
        if point:
            self.integral = False
            self.max_decimals = max(self.max_decimals or 0, len(decimals))
        if len(self.distinct) < DISTINCT_LIMIT and text not in self.distinct:
            self.distinct.append(text)
        if self.number:
            self.numeric = self.numeric and _is_number(text)
        if self.iso:
            self.iso_types.add(_iso_type(text))


@dataclass
class Observed:
    """Statistics of a dataset's columns and, per key value (a --TESTCD or a QNAM), of the
    columns described at value level."""

    columns: dict[str, ValueStats]
    by_key: dict[str, dict[str, ValueStats]] = field(default_factory=dict)
    declared: bool = False
    """Described from the definition: every key's columns are as `columns` says."""

    def key_stats(self, key: str, column: str) -> ValueStats:
        if self.declared:
            return self.columns[column]
        return self.by_key.get(key, {}).get(column) or ValueStats()


def _iso_type(text: str) -> str:
    return next((name for name, pattern in _ISO_PATTERNS if pattern.fullmatch(text)), "text")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def observe(
    dataset: SdtmDataset,
    columns: dict[str, ValueStats],
    key: str | None = None,
    keyed: dict[str, ValueStats] | None = None,
    table: Table | None = None,
) -> Observed:
    """Statistics of `columns` over the dataset's rows and, when `key` is a column, of the
    `keyed` columns per value of `key`; the ValueStats given are empty and say what to track
    (copied per key). Read from the written Dataset-JSON, CSV or XPT file; for a dataset
    described from the definition (no rows counted), the lengths it declares."""
    if dataset.rows is None:
        names = [*columns, *(keyed or {})]
        declared = {name: _known_stats(dataset, name) for name in names}
        return Observed(declared, declared=True)
    names, rows = _read_table(dataset, table)
    position = {name: i for i, name in enumerate(names)}
    measured = [(position[name], stats) for name, stats in columns.items() if name in position]
    keyed_at = [
        (name, position[name], empty) for name, empty in (keyed or {}).items() if name in position
    ]
    key_at = position.get(key or "")
    observed = Observed(columns)
    for row in rows:
        for i, stats in measured:
            value = _text(row[i])
            if value is not None:
                stats.add(value)
        key_value = None if key_at is None else _text(row[key_at])
        if key_value is None:
            continue
        per_key = observed.by_key.get(key_value)
        if per_key is None:
            per_key = {name: empty.tracking_the_same() for name, _i, empty in keyed_at}
            observed.by_key[key_value] = per_key
        for name, i, _empty in keyed_at:
            value = _text(row[i])
            if value is not None:
                per_key[name].add(value)
    return observed


def _read_table(
    dataset: SdtmDataset, table: Table | None
) -> tuple[list[str], Iterable[Sequence[object]]]:
    """Column names and rows of a written dataset: those of its `table` in memory if given,
    else from whichever file was written."""
    if table is not None:
        return [column.name for column in table.columns], table.rows
    if "json" in dataset.files or "csv" in dataset.files:
        return read_written(dataset)
    if "xpt" in dataset.files:
        import pyreadstat  # here: it imports pandas, half a second, and only XPT needs it

        frame, _meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
        return [str(name) for name in frame.columns], frame.itertuples(index=False)
    raise DefineError(f"{dataset.name}: no data file was written")


def _text(value: object) -> str | None:
    """A value as text, numbers formatted as the writers format them; None for null."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float | int):
        return format_number(float(value))
    return str(value)


# -- described from the definition ------------------------------------------------------------

NUMBER_LENGTH = 8
"""Length of a Num variable described from the definition: SAS stores numbers in 8 bytes."""


def planned_datasets(study: Study, specs: SdtmSpecs, folder: Path) -> list[SdtmDataset]:
    """The datasets an SDTM export of the mappings writes (each domain, and its SUPP-- when it
    declares qualifiers), described from the definition: no rows counted (`rows` None), each
    named by the XPT file it would be in `folder`, with the lengths the definition allows."""
    datasets = []
    for spec in specs.with_relrec:
        lengths = {
            var.name: NUMBER_LENGTH if var.type == "Num" else _declared_length(study, spec, var)
            for var in spec.variables
        }
        datasets.append(_planned(spec.domain, spec.label, folder, lengths))
        if not spec.supplemental:
            continue
        qualifiers = spec.supplemental
        supp = {
            "RDOMAIN": len(spec.domain),
            "IDVAR": len(spec.seq_name),
            "IDVARVAL": NUMBER_LENGTH,
            "QNAM": max(len(qual.qnam) for qual in qualifiers),
            "QLABEL": max(len(qual.qlabel.encode()) for qual in qualifiers),
            "QVAL": max(_declared_length(study, spec, qual) for qual in qualifiers),
            "QORIG": max(len(qual.origin.type) for qual in qualifiers),
            "QEVAL": max(
                (len(qual.qeval.encode()) for qual in qualifiers if qual.qeval), default=1
            ),
        }
        supp |= {name: lengths[name] for name in ("STUDYID", "USUBJID") if name in lengths}
        label = f"Supplemental Qualifiers for {spec.domain}"
        datasets.append(_planned(spec.supp_name, label, folder, supp))
    return datasets


def _planned(name: str, label: str, folder: Path, lengths: dict[str, int]) -> SdtmDataset:
    return SdtmDataset(name, label, None, {"xpt": folder / f"{name.lower()}.xpt"}, lengths)


def _declared_length(study: Study, spec: DomainSpec, source: Variable | Supplemental) -> int:
    """The longest text the definition allows a Char variable or qualifier: its declared
    length, else the longest value of its code list, constant or recode, else the length or
    codes of the eCRF item it copies (one code: not a multiple choice), else 200 bytes (the
    SAS XPORT v5 limit)."""
    if isinstance(source, Variable) and source.length is not None:
        return source.length
    values: tuple[str, ...] = ()
    if source.codelist is not None:
        values = codelist_values(study, source.codelist)
    elif isinstance(source.constant, str):
        values = (source.constant,)
    elif source.recode is not None:
        values = tuple(value for value in source.recode.map.values() if value is not None)
    elif source.item is not None:
        items = _copied_items(study, spec, source.item)
        study_list = study.codelists.get(items[0].codelist or "") if items else None
        if study_list is not None and items[0].type == DataType.MULTICHOICE:
            return MAX_VALUE_BYTES  # several codes in one value
        if study_list is not None:
            values = study_list.codes
        elif items and items[0].length is not None:
            return min(items[0].length, MAX_VALUE_BYTES)
    return max((len(value.encode()) for value in values), default=MAX_VALUE_BYTES)


# -- the document -----------------------------------------------------------------------------


def _odm(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _def(tag: str) -> str:
    return f"{{{DEF_NS}}}{tag}"


def _element(
    tag: str,
    attributes: dict[str, str | int | None],
    *children: etree._Element,
    text: str | None = None,
) -> etree._Element:
    """An element with the attributes that have a value, its children in order, and text."""
    element = etree.Element(tag, nsmap=NSMAP)
    for name, value in attributes.items():
        if value is not None:
            element.set(name, str(value))
    element.extend(children)
    element.text = text
    return element


def _translated(text: str) -> etree._Element:
    return _element(_odm("TranslatedText"), {f"{{{XML_NS}}}lang": "en"}, text=text)


def _description(text: str) -> etree._Element:
    return _element(_odm("Description"), {}, _translated(text))


def _leaf(leaf_id: str, href: str, title: str) -> etree._Element:
    title_element = _element(_def("title"), {}, text=title)
    return _element(_def("leaf"), {"ID": leaf_id, f"{{{XLINK_NS}}}href": href}, title_element)


@dataclass
class _Variable:
    """An ItemDef to write: one variable of a dataset, or one value-level item."""

    oid: str
    name: str
    label: str
    data_type: str
    stats: ValueStats
    origin: Origin | None
    codelist: CodeListRef | None = None
    comment: str | None = None
    value_list: str | None = None


@dataclass
class _Document:
    """Collects the parts of MetaDataVersion while the datasets are described."""

    study: Study
    crf: str | None
    tables: Mapping[str, Table]
    crf_pages: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """The pages of each form (by OID) in the annotated CRF."""
    """Rows already in memory, by dataset name, read instead of the written files."""
    item_groups: list[etree._Element] = field(default_factory=list)
    items: list[etree._Element] = field(default_factory=list)
    value_lists: list[etree._Element] = field(default_factory=list)
    where_clauses: dict[str, etree._Element] = field(default_factory=dict)
    codelists: dict[tuple[object, ...], etree._Element] = field(default_factory=dict)
    methods: list[etree._Element] = field(default_factory=list)
    comments: list[etree._Element] = field(default_factory=list)

    def codelist_oid(self, ref: CodeListRef, data_type: str, item: str) -> str:
        """OID of the CodeList of `ref` (one per distinct name and values), adding it once:
        CL.<NCI code>, else CL.<study code list>, else CL.<dataset>.<variable> of `item`;
        numbered .2, .3 ... when lists share that base."""
        values = codelist_values(self.study, ref)
        key = (ref.nci_code, ref.study, ref.name, values)
        existing = self.codelists.get(key)
        if existing is not None:
            return str(existing.get("OID"))
        variable = ".".join(item.split(".")[1:3])
        base = f"CL.{ref.nci_code or (ref.study.removeprefix('CL.') if ref.study else variable)}"
        taken = {str(element.get("OID")) for element in self.codelists.values()}
        oid, number = base, 1
        while oid in taken:
            number += 1
            oid = f"{base}.{number}"
        self.codelists[key] = self._codelist(oid, ref, values, data_type)
        return oid

    def _codelist(
        self, oid: str, ref: CodeListRef, values: tuple[str, ...], data_type: str
    ) -> etree._Element:
        study_list = self.study.codelists.get(ref.study or "")
        name = ref.name or (study_list.name if study_list else oid)
        codelist = _element(
            _odm("CodeList"),
            {
                "OID": oid,
                "Name": name,
                "DataType": "integer" if data_type == "integer" else "text",
                _def("StandardOID"): CT_OID if ref.nci_code else None,
            },
        )
        for order, value in enumerate(values, start=1):
            decode = study_list.decode(value) if study_list else None
            if decode is None:
                codelist.append(
                    _element(_odm("EnumeratedItem"), {"CodedValue": value, "OrderNumber": order})
                )
                continue
            codelist.append(
                _element(
                    _odm("CodeListItem"),
                    {"CodedValue": value, "OrderNumber": order},
                    _element(_odm("Decode"), {}, _translated(decode)),
                )
            )
        if ref.nci_code:
            codelist.append(
                _element(_odm("Alias"), {"Context": "nci:ExtCodeID", "Name": ref.nci_code})
            )
        return codelist

    def method_oid(self, oid: str, origin: Origin, expression: str | None) -> str | None:
        """OID of the MethodDef of a derived variable (added here), or None."""
        if origin.type != "Derived" or not origin.method:
            return None
        method_oid = oid.replace("IT.", "MT.", 1)
        method = _element(
            _odm("MethodDef"),
            {"OID": method_oid, "Name": f"Algorithm to derive {oid[3:]}", "Type": "Computation"},
            _description(origin.method),
        )
        if expression is not None:
            method.append(
                _element(
                    _odm("FormalExpression"), {"Context": "TrialDesk derivation"}, text=expression
                )
            )
        self.methods.append(method)
        return method_oid

    def comment_oid(self, oid: str, text: str | None) -> str | None:
        if text is None:
            return None
        comment_oid = oid.replace("IT.", "COM.", 1)
        self.comments.append(_element(_def("CommentDef"), {"OID": comment_oid}, _description(text)))
        return comment_oid

    def add_item(self, variable: _Variable) -> None:
        length: int | None = None
        digits: int | None = None
        if variable.data_type in ("text", "integer", "float"):
            length = max(variable.stats.max_length, 1)
        if variable.data_type == "float":
            digits = variable.stats.max_decimals
        item = _element(
            _odm("ItemDef"),
            {
                "OID": variable.oid,
                "Name": variable.name,
                "DataType": variable.data_type,
                "Length": length,
                "SignificantDigits": digits,
                "SASFieldName": variable.name,
                _def("CommentOID"): self.comment_oid(variable.oid, variable.comment),
            },
            _description(variable.label),
        )
        if variable.codelist is not None:
            codelist = self.codelist_oid(variable.codelist, variable.data_type, variable.oid)
            item.append(_element(_odm("CodeListRef"), {"CodeListOID": codelist}))
        if variable.origin is not None:
            item.append(self._origin(variable.origin))
        if variable.value_list is not None:
            item.append(_element(_def("ValueListRef"), {"ValueListOID": variable.value_list}))
        self.items.append(item)

    def _origin(self, origin: Origin) -> etree._Element:
        source = "Investigator" if origin.type == "Collected" else "Sponsor"
        element = _element(_def("Origin"), {"Type": origin.type, "Source": source})
        if origin.type == "Collected" and origin.form is not None:
            form = self.study.forms.get(origin.form)
            title = f"{origin.form} ({form.title})" if form is not None else origin.form
            element.append(_description(f"eCRF form {title}"))
            if self.crf is not None:
                pages = " ".join(map(str, self.crf_pages.get(origin.form, ())))
                kind = "PhysicalRef" if pages else "NamedDestination"
                page = _element(
                    _def("PDFPageRef"),
                    {"PageRefs": pages or origin.form, "Type": kind, "Title": title},
                )
                element.append(_element(_def("DocumentRef"), {"leafID": CRF_LEAF}, page))
        return element

    def value_level_ref(
        self, oid: str, order: int, method: str | None, where_item: str, where_value: str
    ) -> etree._Element:
        """The ItemRef of a value-level item, applying where `where_item` equals
        `where_value` (the WhereClauseDef is added once, shared by the variables it serves)."""
        clause = f"WC.{where_item[3:]}.{where_value}"
        if clause not in self.where_clauses:
            check = _element(_odm("CheckValue"), {}, text=where_value)
            range_check = _element(
                _odm("RangeCheck"),
                {"Comparator": "EQ", "SoftHard": "Soft", _def("ItemOID"): where_item},
                check,
            )
            self.where_clauses[clause] = _element(
                _def("WhereClauseDef"), {"OID": clause}, range_check
            )
        item_ref = _item_ref(oid, order, mandatory=False, method=method)
        item_ref.append(_element(_def("WhereClauseRef"), {"WhereClauseOID": clause}))
        return item_ref


def write_define(
    study: Study,
    specs: SdtmSpecs,
    datasets: list[SdtmDataset],
    out_dir: Path,
    *,
    crf: str | None = None,
    crf_pages: Mapping[str, tuple[int, ...]] | None = None,
    created: datetime | None = None,
    tables: Mapping[str, Table] | None = None,
) -> list[Path]:
    """Write `define.xml` describing `datasets` (as `write_sdtm` returned them, files in
    `out_dir`), the stylesheet `define2-1.xsl` next to it (so a browser renders the XML), and
    `define.html` rendered with that stylesheet; return the three paths.

    `crf` is the file name of the annotated CRF the export ships (acrf.pdf): it becomes
    def:AnnotatedCRF and every Collected origin points to its form there, by its pages in
    `crf_pages` (form OID -> page numbers), else by the form OID as a named destination. Without it
    Collected origins name their eCRF form in words. Reads the datasets' data files; raises
    DefineError when a dataset has no mapping in `specs` or the document fails the schema."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tree = define_document(
        study, specs, datasets, crf=crf, crf_pages=crf_pages, created=created, tables=tables
    )
    xml_path = out_dir / DEFINE_XML
    stylesheet_path = out_dir / STYLESHEET
    html_path = out_dir / DEFINE_HTML
    xml_path.write_bytes(
        etree.tostring(tree, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    )
    shutil.copyfile(DEFINE_STYLESHEET, stylesheet_path)
    html_path.write_bytes(render_html(tree))
    return [xml_path, stylesheet_path, html_path]


def define_document(
    study: Study,
    specs: SdtmSpecs,
    datasets: list[SdtmDataset],
    *,
    crf: str | None = None,
    crf_pages: Mapping[str, tuple[int, ...]] | None = None,
    created: datetime | None = None,
    tables: Mapping[str, Table] | None = None,
) -> etree._ElementTree:
    """The Define-XML 2.1 document of `datasets`, valid against the Define-XML 2.1 schema
    (checked here: DefineError names the line and rule otherwise). `tables` (by dataset
    name) hold the rows of the datasets, read instead of their files: a Dataset-JSON or CSV
    file holds exactly the values of its table (XPT alone drops trailing blanks)."""
    document = _Document(study, crf, tables or {}, crf_pages or {})
    for dataset in datasets:
        spec = specs.domain(
            dataset.name.removeprefix("SUPP") if _is_supp(dataset) else dataset.name
        )
        if spec is None:
            raise DefineError(f"{dataset.name}: no mapping in exports/ describes this dataset")
        if _is_supp(dataset):
            _describe_supp(document, spec, dataset)
        else:
            _describe_domain(document, spec, dataset)
    moment = (created or datetime.now(UTC)).astimezone(UTC)
    root = _element(
        _odm("ODM"),
        {
            "FileOID": f"{study.info.oid}.SDTM.Define-XML_2.1.0",
            "FileType": "Snapshot",
            "CreationDateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"),
            "ODMVersion": "1.3.2",
            "Originator": "TrialDesk",
            "SourceSystem": "TrialDesk",
            _def("Context"): "Submission",
        },
        _study(document),
    )
    tree = etree.ElementTree(root)
    root.addprevious(
        etree.ProcessingInstruction("xml-stylesheet", f'type="text/xsl" href="{STYLESHEET}"')
    )
    schema = define_schema()
    if not schema.validate(tree):
        raise DefineError(f"define.xml does not conform to Define-XML 2.1: {schema.error_log}")
    return tree


def _is_supp(dataset: SdtmDataset) -> bool:
    return dataset.name.startswith("SUPP") and len(dataset.name) == 6


def _study(document: _Document) -> etree._Element:
    info = document.study.info
    global_variables = _element(
        _odm("GlobalVariables"),
        {},
        _element(_odm("StudyName"), {}, text=info.oid),
        _element(_odm("StudyDescription"), {}, text=info.description),
        _element(_odm("ProtocolName"), {}, text=info.protocol),
    )
    return _element(_odm("Study"), {"OID": info.oid}, global_variables, _metadata_version(document))


def _metadata_version(document: _Document) -> etree._Element:
    info = document.study.info
    mdv = _element(
        _odm("MetaDataVersion"),
        {
            "OID": metadata_version_oid(document.study),
            "Name": f"{info.oid} SDTM datasets",
            "Description": f"SDTMIG {SDTMIG_VERSION} datasets of {info.name}, exported by TrialDesk",
            _def("DefineVersion"): "2.1.0",
        },
        _standards(document.study),
    )
    if document.crf is not None:
        mdv.append(
            _element(_def("AnnotatedCRF"), {}, _element(_def("DocumentRef"), {"leafID": CRF_LEAF}))
        )
    mdv.extend(document.value_lists)
    mdv.extend(document.where_clauses.values())
    mdv.extend(document.item_groups)
    mdv.extend(document.items)
    mdv.extend(document.codelists.values())
    mdv.extend(document.methods)
    mdv.extend(document.comments)
    if document.crf is not None:
        mdv.append(_leaf(CRF_LEAF, document.crf, "Annotated CRF"))
    return mdv


def _standards(study: Study) -> etree._Element:
    """SDTMIG 3.4 and the SDTM controlled terminology package the study pins."""
    found = re.search(r"\d{4}-\d{2}-\d{2}", study.info.ct_version)
    ct_version = found.group(0) if found else study.info.ct_version
    return _element(
        _def("Standards"),
        {},
        _element(
            _def("Standard"),
            {"OID": SDTMIG_OID, "Name": "SDTMIG", "Type": "IG", "Version": SDTMIG_VERSION,
             "Status": "Final"},
        ),
        _element(
            _def("Standard"),
            {"OID": CT_OID, "Name": "CDISC/NCI", "Type": "CT", "PublishingSet": "SDTM",
             "Version": ct_version, "Status": "Final"},
        ),
    )  # fmt: skip


def _item_group(
    document: _Document,
    dataset: SdtmDataset,
    spec: DomainSpec,
    item_refs: list[etree._Element],
    *,
    structure: str,
    class_name: str,
) -> None:
    name = dataset.name
    leaf_file = next(dataset.files[kind] for kind in FILE_PREFERENCE if kind in dataset.files)
    group = _element(
        _odm("ItemGroupDef"),
        {
            "OID": item_group_oid(name),
            "Domain": spec.domain,
            "Name": name,
            "Repeating": "No" if spec.domain == "DM" and name == "DM" else "Yes",
            "IsReferenceData": "No",
            "SASDatasetName": name,
            "Purpose": "Tabulation",
            _def("Structure"): structure,
            _def("StandardOID"): SDTMIG_OID,
            _def("HasNoData"): "Yes" if dataset.rows == 0 else None,  # None: not counted
            _def("ArchiveLocationID"): f"LF.{name}",
        },
        _description(dataset.label),
        *item_refs,
    )
    if name != spec.domain:
        group.append(_element(_odm("Alias"), {"Context": "DomainDescription", "Name": spec.label}))
    group.append(_element(_def("Class"), {"Name": class_name}))
    group.append(_leaf(f"LF.{name}", leaf_file.name, leaf_file.name))
    document.item_groups.append(group)


def _item_ref(
    oid: str,
    order: int,
    *,
    mandatory: bool,
    key_sequence: int | None = None,
    method: str | None = None,
    role: str | None = None,
) -> etree._Element:
    return _element(
        _odm("ItemRef"),
        {
            "ItemOID": oid,
            "OrderNumber": order,
            "Mandatory": "Yes" if mandatory else "No",
            "KeySequence": key_sequence,
            "MethodOID": method,
            "Role": role,
        },
    )


def _describe_domain(document: _Document, spec: DomainSpec, dataset: SdtmDataset) -> None:
    name = dataset.name
    testcd = f"{spec.domain}TESTCD"
    results = [f"{spec.domain}{suffix}" for suffix in RESULT_SUFFIXES]
    # Tests with units are worth describing one by one (LB, VS); IE's Y/N criteria are not.
    by_test = spec.variable(testcd) is not None and spec.variable(results[1]) is not None
    keyed = [result for result in results if spec.variable(result) is not None] if by_test else []
    measured = {
        var.name: ValueStats(iso=_is_dtc(var))
        for var in spec.variables
        if var.type == "Num" or _is_dtc(var)
    }
    observed = observe(
        dataset,
        measured,
        testcd if keyed else None,
        {result: ValueStats(number=True) for result in keyed},
        document.tables.get(name),
    )
    tests = _tests(document.study, spec, observed) if keyed else []
    written = [variable for variable in spec.variables if dataset.has_variable(variable.name)]
    written_keys = [key for key in spec.keys if dataset.has_variable(key)]
    keys = {key: order for order, key in enumerate(written_keys, start=1)}
    item_refs = []
    for order, variable in enumerate(written, start=1):
        oid = item_oid(name, variable.name)
        stats = observed.columns.get(variable.name) or _known_stats(dataset, variable.name)
        method = document.method_oid(oid, variable.origin, _expression(variable))
        value_list = None
        if variable.name in keyed and tests:
            value_list = _value_list(document, dataset, variable, method, tests, observed)
        document.add_item(
            _Variable(
                oid,
                variable.name,
                variable.label,
                _data_type(document.study, spec, variable, stats),
                stats,
                variable.origin,
                variable.codelist,
                _constant_comment(variable),
                value_list,
            )
        )
        item_refs.append(
            _item_ref(
                oid,
                order,
                mandatory=variable.core == "Req",
                key_sequence=keys.get(variable.name),
                method=method,
                role=variable.role,
            )
        )
    _item_group(
        document,
        dataset,
        spec,
        item_refs,
        structure=spec.structure,
        class_name=CLASS_NAMES[spec.class_],
    )


def _known_stats(dataset: SdtmDataset, name: str) -> ValueStats:
    """The length that comes with the dataset (observed for Char variables when written, or
    declared by the definition); no need to read the values again."""
    return ValueStats(max_length=dataset.lengths.get(name, 1), max_decimals=None)


def _is_dtc(variable: Variable) -> bool:
    return variable.type == "Char" and (
        variable.name.endswith("DTC") or variable.format == "ISO 8601"
    )


def _data_type(study: Study, spec: DomainSpec, variable: Variable, stats: ValueStats) -> str:
    """Define-XML DataType: text; integer or float as Dataset-JSON types the variable; an
    ISO 8601 type (date, datetime, partialDate, partialDatetime) as the values require."""
    if variable.type == "Num":
        return "integer" if json_data_type(variable, study, spec) == "integer" else "float"
    if not _is_dtc(variable):
        return "text"
    if stats.count == 0:
        return _empty_dtc_type(study, spec, variable)
    return _iso_data_type(stats.iso_types)


def _iso_data_type(types: set[str]) -> str:
    """The narrowest Define-XML data type every value fits; text if one is not ISO 8601."""
    return next((name for name, fits in _ISO_DATA_TYPES if types <= fits), "text")


def _empty_dtc_type(study: Study, spec: DomainSpec, variable: Variable) -> str:
    """An always-empty --DTC: the type of the item it copies, else a partial datetime."""
    items = [] if variable.item is None else _copied_items(study, spec, variable.item)
    return next(
        (_ITEM_ISO_TYPES[item.type] for item in items if item.type in _ITEM_ISO_TYPES),
        "partialDatetime",
    )


def _copied_items(study: Study, spec: DomainSpec, reference: str) -> list[ItemDef]:
    """The eCRF items `reference` names in the domain's source forms, in their order."""
    forms = [study.forms.get(source.form or "") for source in spec.sources] or [None]
    found = (resolve_item(study, reference, form) for form in forms)
    return [item for item in found if item is not None]


def _constant_comment(variable: Variable) -> str | None:
    if variable.constant is None:
        return None
    constant = variable.constant
    return f"Always {format_number(constant) if isinstance(constant, float) else constant}"


def _expression(variable: Variable) -> str | None:
    """The named derivation and its arguments, e.g. `study_day(dtc=DMDTC)`."""
    if variable.derivation is None:
        return None
    args = ", ".join(f"{key}={value}" for key, value in variable.derivation.args.items())
    return f"{variable.derivation.name}({args})"


# -- value-level metadata ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Test:
    """One --TESTCD of a findings domain: its name, whether its result is a number (None:
    as the data show), units, result code list and the eCRF form it is collected on."""

    testcd: str
    label: str
    numeric: bool | None = None
    units: tuple[str, ...] = ()
    codelist: CodeListRef | None = None
    form: str | None = None


def _tests(study: Study, spec: DomainSpec, observed: Observed) -> list[_Test]:
    """Tests of a findings domain: the mapping's value-level hints, the tests its record
    sources name (transposed items, preset rows of the lab forms), then any other test the
    data hold; in that order, each once."""
    testcd, test = f"{spec.domain}TESTCD", f"{spec.domain}TEST"
    tests: dict[str, _Test] = {}
    for hint in spec.value_level:
        tests[hint.testcd] = _Test(
            hint.testcd, hint.label or hint.testcd, hint.type == "Num", hint.units, hint.codelist
        )
    for source in spec.sources:
        form = study.forms.get(source.form or "")
        if form is None:
            continue
        group_oid = source.item_group or form.item_groups[0].oid
        named = [entry.values for entry in source.transpose] + [
            row for group in form.item_groups if group.oid == group_oid for row in group.rows
        ]
        for values in named:
            code, unit = values.get(testcd), values.get(f"{spec.domain}ORRESU")
            if isinstance(code, str):
                known = tests.get(code, _Test(code, str(values.get(test, code))))
                units = (*known.units, unit) if isinstance(unit, str) else known.units
                tests[code] = replace(known, form=known.form or form.oid, units=units)
    for code in observed.by_key:
        tests.setdefault(code, _Test(code, code))
    return list(tests.values())


def _value_list(
    document: _Document,
    dataset: SdtmDataset,
    variable: Variable,
    method: str | None,
    tests: list[_Test],
    observed: Observed,
) -> str:
    """The def:ValueListDef of a result variable: one item per test, where --TESTCD is it."""
    domain = variable.name[:2]
    value_list_oid = f"VL.{dataset.name}.{variable.name}"
    testcd_oid = item_oid(dataset.name, f"{domain}TESTCD")
    is_unit = variable.name.endswith("U")
    value_list = _element(_def("ValueListDef"), {"OID": value_list_oid})
    for order, test in enumerate(tests, start=1):
        stats = observed.key_stats(test.testcd, variable.name)
        oid = f"{item_oid(dataset.name, variable.name)}.{test.testcd}"
        units = _test_units(test, observed, variable.name)
        label = f"{variable.label}, {test.label}"
        if units and not is_unit:
            label += f" ({' or '.join(units)})"
        origin = variable.origin
        if origin.type == "Collected" and test.form is not None:
            origin = Origin(type="Collected", form=test.form)
        codelist = test.codelist if variable.type == "Char" else None
        if is_unit:
            # Tests with the same units share one code list, named by its variable and units.
            codelist = None
            if units:
                codelist = CodeListRef(name=f"{variable.name} ({', '.join(units)})", values=units)
        document.add_item(
            _Variable(
                oid,
                variable.name,
                label,
                _result_type(variable, test, stats),
                stats,
                origin,
                codelist,
            )
        )
        value_list.append(document.value_level_ref(oid, order, method, testcd_oid, test.testcd))
    document.value_lists.append(value_list)
    return value_list_oid


def _test_units(test: _Test, observed: Observed, variable: str) -> tuple[str, ...]:
    """Units of a test's original (--ORRES, --ORRESU: the mapping's and those found) or
    standard results (--STRESC, --STRESN, --STRESU: those found)."""
    domain, standard = variable[:2], variable[2:].startswith("ST")
    unit_variable = f"{domain}STRESU" if standard else f"{domain}ORRESU"
    found = observed.key_stats(test.testcd, unit_variable).distinct
    return tuple(dict.fromkeys((*(() if standard else test.units), *found)))


def _result_type(variable: Variable, test: _Test, stats: ValueStats) -> str:
    """A result's DataType for one test: integer or float for a numeric result (Num
    variable, a hint saying so, or every value a number), text otherwise."""
    if variable.name.endswith("U"):
        return "text"
    numeric = variable.type == "Num" or test.numeric or (test.numeric is None and stats.numeric)
    if not numeric or (stats.count > 0 and not stats.numeric):
        return "text"
    return "integer" if stats.count > 0 and stats.integral else "float"


# -- SUPP-- datasets --------------------------------------------------------------------------


def _describe_supp(document: _Document, spec: DomainSpec, dataset: SdtmDataset) -> None:
    name = dataset.name
    keyed = {"QVAL": ValueStats(iso=True), "QLABEL": ValueStats()}
    observed = observe(dataset, {}, "QNAM", keyed, document.tables.get(name))
    qnams = _qnams(spec, observed)
    item_refs = []
    for order, column in enumerate(SUPP_COLUMNS, start=1):
        oid = item_oid(name, column.name)
        value_list = None
        if column.name == "QVAL" and qnams:
            value_list = _supp_value_list(document, dataset, qnams, observed)
        parent = spec.variable(column.name)
        origin = parent.origin if parent is not None else SUPP_ORIGINS.get(column.name)
        document.add_item(
            _Variable(
                oid,
                column.name,
                column.label,
                "text",
                _known_stats(dataset, column.name),
                origin,
                _qnam_codelist(qnams) if column.name == "QNAM" and qnams else None,
                f"Always {spec.domain}" if column.name == "RDOMAIN" else None,
                value_list,
            )
        )
        item_refs.append(
            _item_ref(
                oid,
                order,
                mandatory=column.name not in ("IDVAR", "IDVARVAL", "QEVAL"),
                key_sequence=column.key_sequence,
                method=document.method_oid(oid, origin, None) if origin else None,
            )
        )
    _item_group(
        document,
        dataset,
        spec,
        item_refs,
        structure="One record per IDVAR, IDVARVAL, and QNAM value per subject",
        class_name="RELATIONSHIP",
    )


@dataclass(frozen=True)
class _Qualifier:
    """A QNAM of a SUPP-- dataset and how to describe its QVAL."""

    qnam: str
    qlabel: str
    origin: Origin
    codelist: CodeListRef | None


def _qnams(spec: DomainSpec, observed: Observed) -> list[_Qualifier]:
    """Every QNAM of a SUPP-- dataset: those the mapping declares, then the continuations of
    text split over 200 characters found in the data (AETERM1: origin of AETERM)."""
    qualifiers = {
        qual.qnam: _Qualifier(qual.qnam, qual.qlabel, qual.origin, qual.codelist)
        for qual in spec.supplemental
    }
    continued: dict[str, Origin] = {}
    for source_name, origin in [
        *((var.name, var.origin) for var in spec.variables if var.type == "Char"),
        *((qual.qnam, qual.origin) for qual in spec.supplemental),
    ]:
        for index in range(1, 10):  # 9 x 200 characters: more than any eCRF text holds
            continued.setdefault(supp_qnam(source_name, index), origin)
    for qnam, per_key in observed.by_key.items():
        if qnam in qualifiers:
            continue
        qlabel = per_key["QLABEL"].distinct[0] if per_key["QLABEL"].distinct else qnam
        origin = continued.get(qnam) or Origin(type="Assigned")
        qualifiers[qnam] = _Qualifier(qnam, qlabel, origin, None)
    return list(qualifiers.values())


def _qnam_codelist(qualifiers: list[_Qualifier]) -> CodeListRef:
    return CodeListRef(name="QNAM values", values=tuple(qual.qnam for qual in qualifiers))


def _supp_value_list(
    document: _Document, dataset: SdtmDataset, qualifiers: list[_Qualifier], observed: Observed
) -> str:
    """The def:ValueListDef of QVAL: one item per QNAM, with its label, origin, code list."""
    value_list_oid = f"VL.{dataset.name}.QVAL"
    qnam_oid = item_oid(dataset.name, "QNAM")
    value_list = _element(_def("ValueListDef"), {"OID": value_list_oid})
    for order, qualifier in enumerate(qualifiers, start=1):
        oid = f"{item_oid(dataset.name, 'QVAL')}.{qualifier.qnam}"
        stats = observed.key_stats(qualifier.qnam, "QVAL")
        is_dtc = qualifier.qnam.endswith("DTC") and stats.count > 0
        document.add_item(
            _Variable(
                oid,
                qualifier.qnam,
                qualifier.qlabel,
                _iso_data_type(stats.iso_types) if is_dtc else "text",
                stats,
                qualifier.origin,
                qualifier.codelist,
            )
        )
        method = document.method_oid(oid, qualifier.origin, None)
        value_list.append(document.value_level_ref(oid, order, method, qnam_oid, qualifier.qnam))
    document.value_lists.append(value_list)
    return value_list_oid

"""Define-XML 2.1 of the demo study's SDTM export: valid against the official schema, one
ItemGroupDef per written dataset naming its XPT file, an ItemDef per variable whose data type
and length fit the values shipped, code lists with NCI codes, origins and methods, value-level
metadata for LB and VS by test and for SUPP-- by QNAM, and a define.html listing the datasets
(byte for byte what CDISC's stylesheet renders);
also for a one-subject Dataset-JSON-only export and on PostgreSQL. The validator itself is
shown to accept CDISC's example and to reject a misordered element."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pyreadstat
import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.exporters.define import DefineError, define_document, write_define
from app.exporters.define_html import render_html
from app.exporters.produce import ExportKind, ExportRequest, produce
from app.exporters.scope import ExportScope, ScopeKind
from app.models import Subject
from app.schemas import DEFINE_STYLESHEET, define_schema
from app.sdtm.build import write_sdtm
from app.sdtm.dataset import SdtmDataset, format_number
from app.sdtm.spec import SdtmSpecs, load_sdtm_specs
from app.study.loader import Study
from tests.conftest import REPO, migrated_database

EXPORTS = REPO / "exports"
CDISC_EXAMPLE = REPO / "app" / "schemas" / "define-2.1" / "examples" / "defineV21-SDTM.xml"
NS = {
    "odm": "http://www.cdisc.org/ns/odm/v1.3",
    "def": "http://www.cdisc.org/ns/def/v2.1",
    "xlink": "http://www.w3.org/1999/xlink",
}
DEF = f"{{{NS['def']}}}"
XLINK = f"{{{NS['xlink']}}}"
ISO_PATTERNS = {
    "date": r"\d{4}-\d{2}-\d{2}",
    "datetime": r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}",
    "partialDate": r"\d{4}(-\d{2}(-\d{2})?)?",
    "partialDatetime": r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2})?)?)?)?)?",
}


@dataclass(frozen=True)
class Define:
    """An SDTM export of the demo study with its define.xml, parsed."""

    datasets: list[SdtmDataset]
    paths: list[Path]
    tree: etree._ElementTree

    def one(self, xpath: str) -> etree._Element:
        found = self.tree.xpath(xpath, namespaces=NS)
        assert isinstance(found, list)
        assert len(found) == 1, f"{xpath}: {len(found)} matches"
        element = found[0]
        assert isinstance(element, etree._Element)
        return element

    def all(self, xpath: str) -> list[etree._Element]:
        found = self.tree.xpath(xpath, namespaces=NS)
        assert isinstance(found, list)
        return [element for element in found if isinstance(element, etree._Element)]

    def item_def(self, oid: str) -> etree._Element:
        return self.one(f"//odm:ItemDef[@OID='{oid}']")


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(EXPORTS, zm001)


@contextmanager
def demo_database(backend: str, directory: Path, study: Study) -> Iterator[Engine]:
    """The 20-subject demo study on `backend`, dropped afterwards."""
    with migrated_database(backend, directory) as url:
        engine = make_engine(url)
        try:
            load_demo(engine, study, subjects=len(SCENARIOS))
            yield engine
        finally:
            engine.dispose()


def export_with_define(
    engine: Engine,
    directory: Path,
    study: Study,
    specs: SdtmSpecs,
    *,
    scope: ExportScope = ExportScope(study_id=1),  # noqa: B008 - frozen
    formats: frozenset[str] = frozenset({"xpt", "json", "csv"}),
    crf: str | None = None,
    crf_pages: dict[str, tuple[int, ...]] | None = None,
) -> Define:
    """Export the SDTM datasets of `scope` to `directory` and write define.xml next to them."""
    with Session(engine) as session:
        datasets = write_sdtm(session, study, specs, directory, scope, formats)
    paths = write_define(study, specs, datasets, directory, crf=crf, crf_pages=crf_pages)
    return Define(datasets, paths, etree.parse(str(directory / "define.xml")))


@pytest.fixture(scope="module")
def demo(zm001: Study, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with demo_database("sqlite", tmp_path_factory.mktemp("db"), zm001) as engine:
        yield engine


@pytest.fixture(scope="module")
def define(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path_factory: pytest.TempPathFactory
) -> Define:
    directory = tmp_path_factory.mktemp("sdtm")
    return export_with_define(
        demo, directory, zm001, specs, crf="acrf.pdf", crf_pages={"F.DM": (4,), "F.AE": (76, 77)}
    )


def xpt_columns(dataset: SdtmDataset) -> dict[str, list[object]]:
    frame, _meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
    return {str(name): list(frame[name]) for name in frame.columns}


def as_text(value: object) -> str | None:
    """A value read from XPT as the define describes it: numbers as the writers format them."""
    if isinstance(value, float):
        return None if value != value else format_number(value)
    return str(value) or None


def codes(define: Define, item: etree._Element) -> list[str]:
    """The coded values of the code list an ItemDef refers to."""
    ref = item.find("odm:CodeListRef", NS)
    assert ref is not None, item.get("OID")
    codelist = define.one(f"//odm:CodeList[@OID='{ref.get('CodeListOID')}']")
    return [str(entry.get("CodedValue")) for entry in codelist if entry.get("CodedValue")]


def test_define_xml_is_valid_define_xml_2_1_with_its_stylesheet_and_html(define: Define) -> None:
    assert [path.name for path in define.paths] == ["define.xml", "define2-1.xsl", "define.html"]
    assert define_schema().validate(define.tree), define_schema().error_log
    root = define.tree.getroot()
    assert root.get(DEF + "Context") == "Submission"
    assert root.get("FileType") == "Snapshot"
    stylesheet = root.getprevious()
    assert isinstance(stylesheet, etree._ProcessingInstruction)
    assert stylesheet.get("href") == "define2-1.xsl"
    mdv = define.one("//odm:MetaDataVersion")
    assert mdv.get(DEF + "DefineVersion") == "2.1.0"
    standards = {
        (std.get("Name"), std.get("Version")) for std in define.all("//def:Standards/def:Standard")
    }
    assert standards == {("SDTMIG", "3.4"), ("CDISC/NCI", "2025-09-26")}


def test_every_written_dataset_has_an_item_group_whose_leaf_names_its_xpt_file(
    define: Define,
) -> None:
    groups = define.all("//odm:ItemGroupDef")
    assert [group.get("Name") for group in groups] == [ds.name for ds in define.datasets]
    for dataset in define.datasets:
        group = define.one(f"//odm:ItemGroupDef[@Name='{dataset.name}']")
        leaf = group.find("def:leaf", NS)
        assert leaf is not None
        assert leaf.get(XLINK + "href") == f"{dataset.name.lower()}.xpt"
        assert group.get(DEF + "ArchiveLocationID") == leaf.get("ID")
        assert group.get("Purpose") == "Tabulation"
        assert group.find("def:Class", NS) is not None
    for dataset in define.datasets:
        group = define.one(f"//odm:ItemGroupDef[@Name='{dataset.name}']")
        assert group.get(DEF + "HasNoData") == ("Yes" if dataset.rows == 0 else None)
    assert define.one("//odm:ItemGroupDef[@Name='DM']").get("Repeating") == "No"
    assert define.one("//odm:ItemGroupDef[@Name='SUPPDM']/def:Class").get("Name") == (
        "RELATIONSHIP"
    )


def test_every_variable_has_an_item_def_whose_type_and_length_fit_the_values(
    define: Define,
) -> None:
    for dataset in define.datasets:
        columns = xpt_columns(dataset)
        refs = define.all(f"//odm:ItemGroupDef[@Name='{dataset.name}']/odm:ItemRef")
        assert [define.item_def(str(ref.get("ItemOID"))).get("Name") for ref in refs] == list(
            columns
        ), dataset.name
        for ref in refs:
            item = define.item_def(str(ref.get("ItemOID")))
            name, data_type = str(item.get("Name")), str(item.get("DataType"))
            values = [text for value in columns[name] if (text := as_text(value)) is not None]
            where = f"{dataset.name}.{name} ({data_type})"
            if data_type in ISO_PATTERNS:
                assert item.get("Length") is None, where
                assert all(re.fullmatch(ISO_PATTERNS[data_type], v) for v in values), where
                continue
            assert data_type in ("text", "integer", "float"), where
            longest = max((len(value.encode()) for value in values), default=0)
            assert int(str(item.get("Length"))) >= longest, where
            if data_type == "integer":
                assert all(re.fullmatch(r"-?\d+", value) for value in values), where
            if data_type == "float":
                decimals = max((len(v.partition(".")[2]) for v in values), default=0)
                assert int(str(item.get("SignificantDigits"))) >= decimals, where
    assert define.item_def("IT.DM.AGE").get("DataType") == "integer"
    assert define.item_def("IT.LB.LBSEQ").get("DataType") == "integer"
    assert define.item_def("IT.LB.LBSTRESN").get("DataType") == "float"
    assert define.item_def("IT.DM.BRTHDTC").get("DataType") == "date"


def test_every_oid_is_defined_once_and_every_reference_resolves(define: Define) -> None:
    defined: dict[str, list[str]] = {}
    for attribute in ("OID", "ID"):
        for element in define.all(f"//*[@{attribute}]"):
            defined.setdefault(str(element.get(attribute)), []).append(str(element.tag))
    assert {oid: tags for oid, tags in defined.items() if len(tags) > 1} == {}
    references = [
        "ItemOID", "CodeListOID", "MethodOID", "WhereClauseOID", "ValueListOID", "leafID",
        DEF + "CommentOID", DEF + "StandardOID", DEF + "ArchiveLocationID", DEF + "ItemOID",
    ]  # fmt: skip
    for attribute in references:
        for element in define.tree.iter():
            value = element.get(attribute)
            assert value is None or value in defined, f"{element.tag} {attribute}={value}"


def test_keys_mandatory_variables_and_roles_come_from_the_mapping(
    define: Define, specs: SdtmSpecs
) -> None:
    for dataset in define.datasets:
        spec = specs.domain(dataset.name)
        if spec is None:
            continue  # a SUPP-- dataset
        refs = {
            str(ref.get("ItemOID")): ref
            for ref in define.all(f"//odm:ItemGroupDef[@Name='{spec.domain}']/odm:ItemRef")
        }
        keys = {
            str(ref.get("ItemOID"))[len(f"IT.{spec.domain}.") :]: int(str(ref.get("KeySequence")))
            for ref in refs.values()
            if ref.get("KeySequence")
        }
        written_keys = [key for key in spec.keys if dataset.has_variable(key)]
        assert keys == {key: order for order, key in enumerate(written_keys, start=1)}
        for variable in spec.variables:
            if not dataset.has_variable(variable.name):
                assert f"IT.{spec.domain}.{variable.name}" not in refs
                assert variable.core == "Perm", "only permissible variables are dropped"
                continue
            ref = refs[f"IT.{spec.domain}.{variable.name}"]
            assert ref.get("Mandatory") == ("Yes" if variable.core == "Req" else "No")
            assert ref.get("Role") == variable.role


def test_origins_say_collected_on_which_form_derived_how_or_assigned(define: Define) -> None:
    brthdtc = define.item_def("IT.DM.BRTHDTC").find("def:Origin", NS)
    assert brthdtc is not None
    assert (brthdtc.get("Type"), brthdtc.get("Source")) == ("Collected", "Investigator")
    page = brthdtc.find("def:DocumentRef/def:PDFPageRef", NS)
    assert page is not None and (page.get("Type"), page.get("PageRefs")) == ("PhysicalRef", "4")
    assert "F.DM (Demographics)" in "".join(brthdtc.itertext())
    aeterm = define.one("//odm:ItemDef[@OID='IT.AE.AETERM']/def:Origin/def:DocumentRef/*")
    assert aeterm.get("PageRefs") == "76 77"
    assert define.one("//def:AnnotatedCRF/def:DocumentRef").get("leafID") == "LF.CRF"
    leaf = define.one("//def:leaf[@ID='LF.CRF']")
    assert leaf.get(XLINK + "href") == "acrf.pdf"
    assert leaf.findtext("def:title", namespaces=NS) == "Annotated CRF"

    usubjid_ref = define.one("//odm:ItemGroupDef[@Name='DM']/odm:ItemRef[@ItemOID='IT.DM.USUBJID']")
    method = define.one(f"//odm:MethodDef[@OID='{usubjid_ref.get('MethodOID')}']")
    assert "STUDYID and SUBJID joined by a hyphen" in "".join(method.itertext())
    assert method.get("Type") == "Computation"
    origin = define.item_def("IT.DM.USUBJID").find("def:Origin", NS)
    assert origin is not None and origin.get("Type") == "Derived"

    domain = define.item_def("IT.DM.DOMAIN")
    origin = domain.find("def:Origin", NS)
    assert origin is not None and origin.get("Type") == "Assigned"
    comment = define.one(f"//def:CommentDef[@OID='{domain.get(DEF + 'CommentOID')}']")
    assert "".join(comment.itertext()).strip() == "Always DM"
    origin = define.item_def("IT.DM.STUDYID").find("def:Origin", NS)
    assert origin is not None and origin.get("Type") == "Protocol"


def test_code_lists_carry_the_nci_codes_and_the_submission_values(define: Define) -> None:
    sex = define.item_def("IT.DM.SEX")
    assert codes(define, sex) == ["M", "F"]
    codelist = define.one("//odm:CodeList[@OID='CL.C66731']")
    assert codelist.findtext("odm:CodeListItem/odm:Decode/odm:TranslatedText", namespaces=NS) == (
        "Male"
    )
    alias = codelist.find("odm:Alias", NS)
    assert alias is not None
    assert (alias.get("Context"), alias.get("Name")) == ("nci:ExtCodeID", "C66731")
    assert codelist.get(DEF + "StandardOID") == "STD.CT.SDTM"
    assert codes(define, define.item_def("IT.DM.AGEU")) == ["YEARS"]
    assert codes(define, define.item_def("IT.DM.DTHFL")) == ["Y"]


def test_lb_and_vs_results_have_value_level_metadata_with_one_where_clause_per_test(
    define: Define,
) -> None:
    for domain in ("LB", "VS"):
        dataset = next(ds for ds in define.datasets if ds.name == domain)
        columns = xpt_columns(dataset)
        tests = {str(code) for code in columns[f"{domain}TESTCD"]}
        assert len(tests) > 3
        value_list = define.one(f"//def:ValueListDef[@OID='VL.{domain}.{domain}ORRES']")
        refs = value_list.findall("odm:ItemRef", NS)
        clauses = [ref.findall("def:WhereClauseRef", NS) for ref in refs]
        assert all(len(clause) == 1 for clause in clauses)
        checked = []
        for (clause,) in clauses:
            where = define.one(f"//def:WhereClauseDef[@OID='{clause.get('WhereClauseOID')}']")
            check = where.find("odm:RangeCheck", NS)
            assert check is not None
            assert check.get(DEF + "ItemOID") == f"IT.{domain}.{domain}TESTCD"
            assert check.get("Comparator") == "EQ"
            checked.append(check.findtext("odm:CheckValue", namespaces=NS))
        assert len(checked) == len(set(checked))
        assert tests <= set(checked)
        orres = define.item_def(f"IT.{domain}.{domain}ORRES")
        assert orres.find("def:ValueListRef", NS) is not None
    for domain in ("LB", "VS"):
        columns = xpt_columns(next(ds for ds in define.datasets if ds.name == domain))
        for name in (f"{domain}ORRES", f"{domain}ORRESU", f"{domain}STRESC"):
            per_test: dict[str, set[str]] = {}
            for testcd, value in zip(columns[f"{domain}TESTCD"], columns[name], strict=True):
                if text := as_text(value):
                    per_test.setdefault(str(testcd), set()).add(text)
            for testcd, values in per_test.items():
                item = define.item_def(f"IT.{domain}.{name}.{testcd}")
                where = f"{domain}.{name} where {domain}TESTCD = {testcd}"
                assert int(str(item.get("Length"))) >= max(len(v) for v in values), where
                if name.endswith("U"):
                    assert values <= set(codes(define, item)), where
    temp = define.item_def("IT.VS.VSORRES.TEMP")
    assert (temp.get("DataType"), temp.get("SignificantDigits")) == ("float", "1")
    assert "Temperature" in "".join(temp.itertext())
    assert codes(define, define.item_def("IT.VS.VSORRESU.TEMP")) == ["C"]
    assert codes(define, define.item_def("IT.LB.LBORRESU.HGB")) == ["g/L", "g/dL"]
    assert codes(define, define.item_def("IT.LB.LBSTRESU.HGB")) == ["g/L"]


def test_supp_qval_has_value_level_metadata_for_every_qnam_in_the_data(define: Define) -> None:
    for dataset in define.datasets:
        if not dataset.name.startswith("SUPP") or dataset.rows == 0:
            continue
        qnams = {str(qnam) for qnam in xpt_columns(dataset)["QNAM"]}
        value_list = define.one(f"//def:ValueListDef[@OID='VL.{dataset.name}.QVAL']")
        described = {
            define.item_def(str(ref.get("ItemOID"))).get("Name")
            for ref in value_list.findall("odm:ItemRef", NS)
        }
        assert qnams <= described, dataset.name
    childpot = define.item_def("IT.SUPPDM.QVAL.CHILDPOT")
    assert "Woman of Childbearing Potential" in "".join(childpot.itertext())
    assert childpot.find("odm:CodeListRef", NS) is not None


def test_define_html_lists_every_dataset(define: Define) -> None:
    html = lxml.html.parse(str(define.paths[2])).getroot()
    text = html.text_content()
    for dataset in define.datasets:
        assert f"{dataset.name.lower()}.xpt" in text
        assert dataset.label in text
    assert "ZM001" in text


def test_define_html_is_what_cdiscs_stylesheet_renders_byte_for_byte(define: Define) -> None:
    """define.html is rendered with define2-1.xsl's lookups indexed (app/exporters/define_html):
    the same bytes as the unchanged stylesheet, for the demo export and CDISC's example (which
    has what ours lacks: external code lists, several where clauses per item, methods, comments
    with documents); the stylesheet shipped beside define.xml is the vendored one."""
    assert define.paths[2].read_bytes() == render_html(define.tree, indexed=False)
    example = etree.parse(str(CDISC_EXAMPLE))
    assert render_html(example) == render_html(example, indexed=False)
    assert define.paths[1].read_bytes() == DEFINE_STYLESHEET.read_bytes()


def test_the_schema_accepts_cdiscs_example_and_rejects_a_misordered_element(
    define: Define,
) -> None:
    schema = define_schema()
    example = etree.parse(str(CDISC_EXAMPLE))
    assert schema.validate(example)
    standards = example.getroot().find(".//def:Standards", NS)
    assert standards is not None
    parent = standards.getparent()
    assert parent is not None
    parent.append(standards)  # def:Standards must come first in MetaDataVersion
    assert not schema.validate(example)
    assert "Standards" in str(schema.error_log)

    ours = etree.ElementTree(etree.fromstring(etree.tostring(define.tree)))
    item_def = ours.getroot().find(".//odm:ItemDef", NS)
    assert item_def is not None
    description = item_def.find("odm:Description", NS)
    assert description is not None
    item_def.append(description)  # Description must precede def:Origin
    assert not schema.validate(ours)


def test_the_same_define_is_written_from_xpt_dataset_json_or_csv_files(
    define: Define, zm001: Study, specs: SdtmSpecs
) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    documents = {
        kind: etree.tostring(
            define_document(
                zm001,
                specs,
                [replace(ds, files={kind: ds.files[kind]}) for ds in define.datasets],
                created=created,
            )
        ).replace(f".{kind}".encode(), b".data")
        for kind in ("xpt", "json", "csv")
    }
    assert documents["xpt"] == documents["json"] == documents["csv"]


def test_a_dataset_without_a_mapping_is_refused(define: Define, zm001: Study) -> None:
    stray = SdtmDataset("XX", "Unmapped", 0, define.datasets[0].files, {})
    with pytest.raises(DefineError, match="XX: no mapping"):
        define_document(zm001, load_sdtm_specs(EXPORTS, zm001), [stray])


def test_define_of_an_export_from_postgresql_is_valid(
    zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    with demo_database("postgresql", tmp_path / "db", zm001) as engine:
        result = export_with_define(engine, tmp_path, zm001, specs)
    assert define_schema().validate(result.tree), define_schema().error_log
    names = [group.get("Name") for group in result.all("//odm:ItemGroupDef")]
    assert names == [dataset.name for dataset in result.datasets]
    assert result.all("//def:AnnotatedCRF") == []
    origin = result.item_def("IT.DM.BRTHDTC").find("def:Origin", NS)
    assert origin is not None and origin.find("def:DocumentRef", NS) is None


def test_define_of_one_subjects_json_export_names_the_json_files(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    with Session(demo) as session:
        subject = session.exec(select(Subject).order_by(col(Subject.subject_key))).first()
        assert subject is not None and subject.id is not None
        scope = ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=subject.id)
    result = export_with_define(
        demo, tmp_path, zm001, specs, scope=scope, formats=frozenset({"json"})
    )
    assert define_schema().validate(result.tree), define_schema().error_log
    for dataset in result.datasets:
        group = result.one(f"//odm:ItemGroupDef[@Name='{dataset.name}']")
        leaf = group.find("def:leaf", NS)
        assert leaf is not None and leaf.get(XLINK + "href") == f"{dataset.name.lower()}.json"
    dm = next(dataset for dataset in result.datasets if dataset.name == "DM")
    assert dm.rows == 1


def test_define_xml_alone_is_described_from_the_definition_whatever_the_data(
    demo: Engine, zm001: Study, define: Define, tmp_path: Path
) -> None:
    """Define-XML alone reads no subject's data: the same document for the demo study and for
    an empty database, with every dataset an SDTM export can write and lengths that hold the
    values of the demo export."""
    documents = []
    with migrated_database("sqlite", tmp_path / "db") as empty_url:
        empty = make_engine(empty_url)
        for name, engine in (("demo", demo), ("empty", empty)):
            out = tmp_path / name
            out.mkdir()
            with Session(engine) as session:
                request = ExportRequest(ExportKind.DEFINE, ExportScope(study_id=zm001.id))
                files = produce(session, zm001, request, out)
            assert [f.name for f in files] == [
                "acrf.pdf", "blankcrf.pdf", "define.xml", "define2-1.xsl", "define.html"
            ]  # fmt: skip
            text = (out / "define.xml").read_text()
            documents.append(re.sub(r'CreationDateTime="[^"]+"', "", text))
        empty.dispose()
    assert documents[0] == documents[1]
    alone = etree.parse(str(tmp_path / "empty" / "define.xml")).getroot()
    assert define_schema().validate(alone), define_schema().error_log
    groups = alone.findall(".//odm:ItemGroupDef", NS)
    planned = [str(group.get("Name")) for group in groups]
    written = [d.name for d in define.datasets]
    assert [name for name in planned if name in written] == written
    assert all(group.get(DEF + "HasNoData") is None for group in groups)
    for item in define.all("//odm:ItemDef[@Length]"):
        if item.get("DataType") == "text" and str(item.get("OID")).count(".") == 2:
            declared = alone.find(f".//odm:ItemDef[@OID='{item.get('OID')}']", NS)
            assert declared is not None, item.get("OID")
            assert int(str(declared.get("Length"))) >= int(str(item.get("Length"))), item.get("OID")

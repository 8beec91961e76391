"""ODM 1.3.2 study metadata: the document validates against the CDISC schema and tells a reader
the schedule, derivations, collection conditions, ranges and code lists of the definition."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from app.exporters.odm_metadata import (
    metadata_document,
    metadata_version_oid,
    study_element,
)
from app.study.loader import Study, load_study

REPO = Path(__file__).resolve().parents[1]
ODM_SCHEMA = REPO / "app" / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"
ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
NS = {"odm": ODM_NS}
CREATED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)

SCHEDULE = """
anchors:
  - {id: consent, label: Informed consent signed, source: IC.ICDAT}
periods:
  - {oid: EP.SCREENING, name: Screening, epoch: SCREENING}
visits:
  - oid: SE.SCR
    name: Screening
    visitnum: 1
    period: EP.SCREENING
    anchor: consent
    day: 0
    window: {from: 0, to: 14}
    forms: [F.IC, F.DM]
  - oid: SE.UNS
    name: Unscheduled
    visitnum: 99
    period: EP.SCREENING
    type: unscheduled
    repeating: true
    forms:
      - {form: F.DM, mandatory: false}
log_forms:
  - {form: F.WT, repeating: true}
"""

WEIGHT_LOG = """
oid: F.WT
name: WT
title: Weight log
version: "1.0"
item_groups:
  - oid: IG.WT
    name: WTROWS
    label: Weights
    repeating: true
    items:
      - oid: IT.WT.WTDAT
        name: WTDAT
        label: Date weighed
        type: date
        required: true
      - oid: IT.WT.WEIGHT
        name: WEIGHT
        label: Weight
        type: float
        decimals: 1
        units: MU.KG
        hard_range: {min: 20, max: 300}
        soft_range: {min: 40}
        required: true
      - oid: IT.WT.WEIGHTLB
        name: WEIGHTLB
        label: Weight in pounds
        type: float
        decimals: 1
        hard_range: {max: 700}
        derivation: "WEIGHT != null ? round_to(WEIGHT * 2.20462, 1) : null"
"""


@pytest.fixture
def study(tmp_path: Path) -> Study:
    """A small valid definition: the ZM001 IC and DM forms, two visits and a repeating log."""
    forms = REPO / "forms"
    folder = tmp_path / "study"
    for name in (
        "study.yaml",
        "codelists/common.yaml",
        "units/units.yaml",
        "ecrf/IC.yaml",
        "ecrf/DM.yaml",
    ):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(forms / name, folder / name)
    (folder / "schedule.yaml").write_text(SCHEDULE, encoding="utf-8")
    (folder / "subject_path.yaml").write_text(
        "initial: screening\nstatuses:\n  - {code: screening, label: Screening}\n",
        encoding="utf-8",
    )
    (folder / "ecrf" / "WT.yaml").write_text(WEIGHT_LOG, encoding="utf-8")
    return replace(load_study(folder), version=3)  # as released as its third version


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(file=str(ODM_SCHEMA))


def schema_errors(schema: etree.XMLSchema, document: etree._Element) -> list[str]:
    """Every schema violation of `document`, one message a line; empty when it is valid."""
    return [] if schema.validate(document) else str(schema.error_log).splitlines()


@pytest.fixture
def odm(study: Study, schema: etree.XMLSchema) -> etree._Element:
    """The metadata document of `study`, parsed and checked against the ODM 1.3.2 schema."""
    document = etree.fromstring(metadata_document(study, file_oid="F.TEST", created=CREATED))
    assert schema_errors(schema, document) == []
    return document


def found(root: etree._Element, path: str) -> list[object]:
    result = root.xpath(path, namespaces=NS)
    assert isinstance(result, list), f"{path}: {result!r}"
    return list(result)


def elements(root: etree._Element, path: str) -> list[etree._Element]:
    result = found(root, path)
    assert all(isinstance(element, etree._Element) for element in result), f"{path}: {result}"
    return [element for element in result if isinstance(element, etree._Element)]


def one(root: etree._Element, path: str) -> etree._Element:
    result = elements(root, path)
    assert len(result) == 1, f"{path}: {result}"
    return result[0]


def texts(root: etree._Element, path: str) -> list[str]:
    return [str(value) for value in found(root, path)]


def test_document_is_a_snapshot_holding_the_study(odm: etree._Element, study: Study) -> None:
    assert odm.tag == f"{{{ODM_NS}}}ODM"
    assert odm.get("FileType") == "Snapshot"
    assert odm.get("ODMVersion") == "1.3.2"
    assert odm.get("FileOID") == "F.TEST"
    assert odm.get("CreationDateTime") == "2025-03-04T05:06:07+00:00"
    assert one(odm, "odm:Study").get("OID") == study.info.oid
    assert texts(odm, "//odm:GlobalVariables/odm:ProtocolName/text()") == [study.info.protocol]
    mdv = one(odm, "//odm:MetaDataVersion")
    assert mdv.get("OID") == metadata_version_oid(study)
    assert metadata_version_oid(study) == "MDV.ZM001.3"
    assert mdv.get("Name") == study.info.protocol
    assert texts(odm, "//odm:MeasurementUnit[@OID='MU.KG']/odm:Symbol/odm:TranslatedText/text()")
    assert texts(odm, "//odm:MeasurementUnit/@OID") == list(study.units)


def test_schedule_lists_visits_then_the_log_event_with_their_forms(odm: etree._Element) -> None:
    refs = elements(odm, "//odm:Protocol/odm:StudyEventRef")
    assert [(r.get("StudyEventOID"), r.get("OrderNumber"), r.get("Mandatory")) for r in refs] == [
        ("SE.SCR", "1", "Yes"),
        ("SE.UNS", "2", "No"),
        ("SE.LOG", "3", "No"),
    ]
    screening = one(odm, "//odm:StudyEventDef[@OID='SE.SCR']")
    assert (screening.get("Type"), screening.get("Repeating")) == ("Scheduled", "No")
    assert texts(screening, "odm:FormRef/@FormOID") == ["F.IC", "F.DM"]
    assert texts(screening, "odm:FormRef/@Mandatory") == ["Yes", "Yes"]
    unscheduled = one(odm, "//odm:StudyEventDef[@OID='SE.UNS']")
    assert (unscheduled.get("Type"), unscheduled.get("Repeating")) == ("Unscheduled", "Yes")
    assert texts(unscheduled, "odm:FormRef[@FormOID='F.DM']/@Mandatory") == ["No"]
    logs = one(odm, "//odm:StudyEventDef[@OID='SE.LOG']")
    assert (logs.get("Name"), logs.get("Type"), logs.get("Repeating")) == ("Logs", "Common", "No")
    assert texts(logs, "odm:FormRef/@FormOID") == ["F.WT"]


def test_repeating_log_form_and_its_rows(odm: etree._Element) -> None:
    assert one(odm, "//odm:FormDef[@OID='F.WT']").get("Repeating") == "Yes"
    assert one(odm, "//odm:FormDef[@OID='F.DM']").get("Repeating") == "No"
    rows = one(odm, "//odm:ItemGroupDef[@OID='IG.WT']")
    assert rows.get("Repeating") == "Yes"
    derived = one(rows, "odm:ItemRef[@ItemOID='IT.WT.WEIGHTLB']")
    method = one(odm, f"//odm:MethodDef[@OID='{derived.get('MethodOID')}']")
    assert texts(method, "odm:FormalExpression/text()") == [
        "WEIGHT != null ? round_to(WEIGHT * 2.20462, 1) : null"
    ]
    # a derived value is only ever flagged, so even its hard range is a soft check
    assert texts(odm, "//odm:ItemDef[@OID='IT.WT.WEIGHTLB']/odm:RangeCheck/@SoftHard") == ["Soft"]


def test_derived_age_names_its_method(odm: etree._Element, study: Study) -> None:
    age_ref = one(odm, "//odm:ItemGroupDef[@OID='IG.DM']/odm:ItemRef[@ItemOID='IT.DM.AGE']")
    assert age_ref.get("Mandatory") == "No"
    method = one(odm, f"//odm:MethodDef[@OID='{age_ref.get('MethodOID')}']")
    assert method.get("Type") == "Computation"
    expression = one(method, "odm:FormalExpression")
    assert expression.get("Context") == "CEL"
    age = next(item for item in study.forms["F.DM"].item_groups[0].items if item.name == "AGE")
    assert expression.text == age.derivation == "years_between(BRTHDAT, IC.ICDAT)"


def test_childbearing_potential_is_not_collected_unless_female(odm: etree._Element) -> None:
    ref = one(odm, "//odm:ItemRef[@ItemOID='IT.DM.CHILDPOT']")
    assert ref.get("Mandatory") == "Yes"
    condition = one(odm, f"//odm:ConditionDef[@OID='{ref.get('CollectionExceptionConditionOID')}']")
    expression = one(condition, "odm:FormalExpression")
    assert expression.get("Context") == "CEL"
    assert expression.text == "!(SEX == 'F')"
    assert texts(condition, "odm:Description/odm:TranslatedText/text()")


def test_range_checks(odm: etree._Element) -> None:
    def checks(item_oid: str) -> list[tuple[str | None, str | None, list[str]]]:
        return [
            (check.get("SoftHard"), check.get("Comparator"), texts(check, "odm:CheckValue/text()"))
            for check in elements(odm, f"//odm:ItemDef[@OID='{item_oid}']/odm:RangeCheck")
        ]

    assert checks("IT.DM.AGE") == [("Soft", "GE", ["18"]), ("Soft", "LE", ["70"])]
    assert checks("IT.WT.WEIGHT") == [
        ("Hard", "GE", ["20"]),
        ("Hard", "LE", ["300"]),
        ("Soft", "GE", ["40"]),  # no upper soft limit: that side is omitted
    ]
    weight = one(odm, "//odm:ItemDef[@OID='IT.WT.WEIGHT']")
    assert (weight.get("DataType"), weight.get("SignificantDigits")) == ("float", "1")
    assert texts(weight, "odm:MeasurementUnitRef/@MeasurementUnitOID") == ["MU.KG"]


def test_items_carry_name_type_question_and_code_list(odm: etree._Element) -> None:
    sex = one(odm, "//odm:ItemDef[@OID='IT.DM.SEX']")
    assert (sex.get("Name"), sex.get("DataType"), sex.get("SASFieldName")) == ("SEX", "text", "SEX")
    question = one(sex, "odm:Question/odm:TranslatedText")
    assert question.text == "Sex"
    assert question.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert texts(sex, "odm:CodeListRef/@CodeListOID") == ["CL.SEX"]
    assert one(odm, "//odm:ItemDef[@OID='IT.IC.ICVER']").get("Length") == "20"


def test_code_list_decodes(odm: etree._Element) -> None:
    sex = one(odm, "//odm:CodeList[@OID='CL.SEX']")
    assert sex.get("DataType") == "text"
    decodes = {
        item.get("CodedValue"): texts(item, "odm:Decode/odm:TranslatedText/text()")
        for item in elements(sex, "odm:CodeListItem")
    }
    assert decodes == {"M": ["Male"], "F": ["Female"]}


def test_study_element_can_be_streamed_into_a_larger_document(
    study: Study, schema: etree.XMLSchema, tmp_path: Path
) -> None:
    element = study_element(study)
    assert element.tag == f"{{{ODM_NS}}}Study"
    path = tmp_path / "odm.xml"
    with etree.xmlfile(str(path), encoding="UTF-8") as xf:
        attributes = {
            "FileType": "Snapshot",
            "FileOID": "F.STREAM",
            "CreationDateTime": CREATED.isoformat(),
            "ODMVersion": "1.3.2",
        }
        with xf.element(f"{{{ODM_NS}}}ODM", attributes, nsmap={None: ODM_NS}):
            xf.write(element)
    assert schema_errors(schema, etree.parse(str(path)).getroot()) == []


def test_schema_rejects_a_broken_document(odm: etree._Element, schema: etree.XMLSchema) -> None:
    mdv = one(odm, "//odm:MetaDataVersion")
    mdv.insert(0, one(mdv, "odm:ItemDef[@OID='IT.DM.AGE']"))  # an ItemDef before the Protocol
    errors = schema_errors(schema, odm)
    assert len(errors) == 1, errors
    assert f"Element '{{{ODM_NS}}}Protocol': This element is not expected" in errors[0]


def test_creation_time_must_have_a_time_zone(study: Study) -> None:
    with pytest.raises(ValueError, match="timezone"):
        metadata_document(study, file_oid="F.TEST", created=datetime(2025, 3, 4, 5, 6, 7))

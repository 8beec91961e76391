"""SDTM trial design datasets of ZM001 (TS, TA, TE, TV, TI) as a reviewer reads them: TS holds
the study start (the earliest consent entered, whatever the export's scope) and every design
parameter with its code and terminology; TA has each dose level in each phase through the
schedule's elements, the arm decided at enrolment; TE the elements; TV the scheduled visits
with their study days; TI the eligibility criteria. They are written in every format, pass
the SDTMIG rule checks, and Define-XML lists them and stays valid. A study without a design
section (HT201) still gets the parameters its definition gives."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session

from app.exporters.define import write_define
from app.exporters.scope import ExportScope, ScopeKind
from app.models import pk
from app.schemas import define_schema
from app.sdtm.build import build_tables, write_sdtm
from app.sdtm.dataset import SdtmDataset, Table
from app.sdtm.derive import Value
from app.sdtm.rules import check_dataset, read_written
from app.sdtm.spec import DomainSpec, SdtmSpecs, load_sdtm_specs, sdtm_problems
from app.sdtm.trial_design import trial_design_table
from app.study.loader import Study, load_study, study_problems
from tests import factories
from tests.conftest import REPO

DESIGN = ("TA", "TE", "TI", "TS", "TV")
CONSENTS = {1: date(2026, 3, 10), 2: date(2026, 2, 3), 3: date(2026, 4, 1)}
"""Consent dates of three subjects by site: the study started on 2026-02-03 (site 2)."""
COORDINATORS = {1: "coordinator", 2: "coordinator2", 3: "coordinator3"}
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}
Record = dict[str, Value]


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(REPO / "exports", zm001)


@pytest.fixture
def consented(demo_engine: Engine, zm001: Study) -> dict[int, int]:
    """Three subjects at three sites, each with a signed consent (the demo's sites and
    accounts only); their ids by site."""
    subjects = {}
    with Session(demo_engine) as session:
        for site_id, signed in CONSENTS.items():
            by = COORDINATORS[site_id]
            subject = factories.register(session, zm001, site_id=site_id, by=by)
            consent = {"ICVER": "2.0", "ICDAT": signed.isoformat(), "ICLTFU": "Y"}
            factories.save(session, zm001, subject, "F.IC", {"IG.IC": {1: consent}}, by=by)
            subjects[site_id] = pk(subject)
    return subjects


def rows(table: Table) -> list[Record]:
    names = [column.name for column in table.columns]
    return [dict(zip(names, row, strict=True)) for row in table.rows]


def design_tables(engine: Engine, study: Study, specs: SdtmSpecs) -> dict[str, list[Record]]:
    with Session(engine) as session:
        return {
            spec.domain: rows(trial_design_table(session, study, specs, spec))
            for spec in specs.domains
            if spec.trial_design is not None
        }


def test_ts_holds_the_study_start_and_every_design_parameter(
    demo_engine: Engine, consented: dict[int, int], zm001: Study, specs: SdtmSpecs
) -> None:
    last = consented[max(CONSENTS, key=CONSENTS.__getitem__)]
    scope = ExportScope(ScopeKind.SUBJECT, study_id=zm001.id, subject_id=last)
    with Session(demo_engine) as session:
        tables = {table.name: table for table in build_tables(session, zm001, specs, scope)}
    assert [row[2] for row in tables["DM"].rows] == ["ZM001-03-001"]
    ts = {(str(r["TSPARMCD"]), r["TSSEQ"]): r for r in rows(tables["TS"])}
    values = {parmcd: record["TSVAL"] for (parmcd, _seq), record in ts.items()}
    # the earliest consent of any subject, although the export covers the last one only
    assert ts[("SSTDTC", 1.0)]["TSVAL"] == "2026-02-03"
    assert ts[("SSTDTC", 1.0)]["TSVCDREF"] == "ISO 8601"
    assert values | {"SSTDTC": None} == {
        "TITLE": "Clinical Study of ZM001 Injection in the Treatment of Refractory Systemic "
        "Lupus Erythematosus",
        "TPHASE": "PHASE I TRIAL",
        "STYPE": "INTERVENTIONAL",
        "TTYPE": "SAFETY",
        "INTMODEL": "SINGLE GROUP",
        "NARMS": "8",
        "TBLIND": "OPEN LABEL",
        "RANDOM": "N",
        "ADAPT": "N",
        "HLTSUBJI": "N",
        "PLANSUB": "18",
        "AGEMIN": "P18Y",
        "AGEMAX": "P70Y",
        "SEXPOP": "BOTH",
        "TRT": "ZM001 Injection",
        "PCLAS": "CD19-directed Genetically Modified Autologous T Cell Immunotherapy",
        "INDIC": "Systemic lupus erythematosus",
        "THERAREA": "Rheumatology",
        "SPONSOR": "Beijing Immunochina Medical Science & Technology Co., Ltd.",
        "REGID": "NCT06852573",
        "SSTDTC": None,
        "SDTMVER": "2.0",
        "SDTIGVER": "3.4",
        "TERMVER": "CDISC CT 2025-09-26",
    }
    coded = {parmcd: (r["TSVALCD"], r["TSVCDREF"], r["TSVCDVER"]) for (parmcd, _), r in ts.items()}
    assert coded["TPHASE"] == ("C15600", "CDISC CT", "2025-09-26")
    assert coded["STYPE"] == ("C98388", "CDISC CT", "2025-09-26")
    assert coded["INTMODEL"] == ("C82640", "CDISC CT", "2025-09-26")
    assert coded["TBLIND"] == ("C49659", "CDISC CT", "2025-09-26")
    assert coded["RANDOM"] == coded["ADAPT"] == ("C49487", "CDISC CT", "2025-09-26")
    assert coded["SEXPOP"] == ("C49636", "CDISC CT", "2025-09-26")
    assert coded["AGEMIN"] == coded["AGEMAX"] == (None, "ISO 8601", None)
    assert coded["REGID"] == ("NCT06852573", "ClinicalTrials.gov", None)
    assert coded["TITLE"] == coded["PLANSUB"] == coded["TRT"] == (None, None, None)
    assert coded["TERMVER"] == (None, "CDISC CT", "2025-09-26")
    assert {r["STUDYID"] for r in ts.values()} == {"ZM001"}
    names = {parmcd: record["TSPARM"] for (parmcd, _seq), record in ts.items()}
    assert (names["SSTDTC"], names["TPHASE"], names["PCLAS"], names["SDTIGVER"]) == (
        "Study Start Date",
        "Trial Phase Classification",
        "Pharmacologic Class",
        "SDTM IG Version",
    )


def test_ts_records_each_coding_dictionary_loaded(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    dictionaries = {"MedDRA": "27.1", "WHODrug": "B3 2024-09-01"}
    with Session(demo_engine) as session:
        ts = rows(trial_design_table(session, zm001, specs, domain(specs, "TS"), dictionaries))
    versions = [
        (r["TSSEQ"], r["TSVAL"], r["TSVCDREF"], r["TSVCDVER"])
        for r in ts
        if r["TSPARMCD"] == "TERMVER"
    ]
    assert versions == [
        (1.0, "CDISC CT 2025-09-26", "CDISC CT", "2025-09-26"),
        (2.0, "MedDRA 27.1", "MedDRA", "27.1"),
        (3.0, "WHODrug B3 2024-09-01", "WHODrug", "B3 2024-09-01"),
    ]


def test_without_any_consent_ts_has_no_study_start(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    ts = design_tables(demo_engine, zm001, specs)["TS"]
    assert "SSTDTC" not in {r["TSPARMCD"] for r in ts}


def test_ta_has_every_dose_level_in_each_phase_through_the_elements(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    ta = design_tables(demo_engine, zm001, specs)["TA"]
    arms = list(dict.fromkeys((r["ARMCD"], r["ARM"]) for r in ta))
    assert arms == [
        ("DL1-ESC", "DL1 dose escalation: 2.5x10^7 CAR-T cells"),
        ("DL2-ESC", "DL2 dose escalation: 5x10^7 CAR-T cells"),
        ("DL3-ESC", "DL3 dose escalation: 1x10^8 CAR-T cells"),
        ("DL4-ESC", "DL4 dose escalation: 2x10^8 CAR-T cells"),
        ("DL1-EXP", "DL1 dose expansion: 2.5x10^7 CAR-T cells"),
        ("DL2-EXP", "DL2 dose expansion: 5x10^7 CAR-T cells"),
        ("DL3-EXP", "DL3 dose expansion: 1x10^8 CAR-T cells"),
        ("DL4-EXP", "DL4 dose expansion: 2x10^8 CAR-T cells"),
    ]
    dl3 = [r for r in ta if r["ARMCD"] == "DL3-EXP"]
    assert [(r["TAETORD"], r["ETCD"], r["EPOCH"]) for r in dl3] == [
        (1.0, "SCRN", "SCREENING"),
        (2.0, "COLL", "CELL COLLECTION"),
        (3.0, "LD", "LYMPHODEPLETION"),
        (4.0, "INF", "TREATMENT"),
        (5.0, "FU", "FOLLOW-UP"),
        (6.0, "LTFU", "LONG-TERM FOLLOW-UP"),
    ]
    assert dl3[3]["ELEMENT"] == "ZM001 infusion"
    assert [r["TABRANCH"] for r in dl3] == [
        "Assigned at enrolment to DL3 dose expansion: 1x10^8 CAR-T cells",
        *[None] * 5,
    ]
    assert {r["TATRANS"] for r in ta} == {None}


def test_te_has_one_record_per_element_with_its_rules(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    te = design_tables(demo_engine, zm001, specs)["TE"]
    assert [r["ETCD"] for r in te] == ["SCRN", "COLL", "LD", "INF", "FU", "LTFU"]
    infusion = te[3]
    assert (infusion["ELEMENT"], infusion["TESTRL"], infusion["TEENRL"]) == (
        "ZM001 infusion",
        "ZM001 infusion (D0)",
        "Day after the infusion (D1 visit)",
    )
    assert te[0]["TESTRL"] == "Informed consent signed"


def test_tv_has_the_scheduled_visits_with_their_study_days_and_windows(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    tv = design_tables(demo_engine, zm001, specs)["TV"]
    assert [r["VISITNUM"] for r in tv] == [float(n) for n in range(1, 21)]  # not LTFU, ET, UNS
    by_name = {r["VISIT"]: r for r in tv}
    screening, baseline = by_name["Screening"], by_name["Pre-lymphodepletion baseline"]
    assert screening["VISITDY"] is None  # timed from leukapheresis, not from the infusion
    assert screening["TVSTRL"] == (
        "Start of day -28 relative to Leukapheresis day (L0) (planned day -28)"
    )
    assert screening["TVENRL"] == "End of day -1 relative to Leukapheresis day (L0)"
    assert baseline["VISITDY"] == -7.0
    assert by_name["Day 0 infusion"]["VISITDY"] == 1.0  # RFSTDTC is study day 1
    day7 = by_name["Day 7"]
    assert day7["VISITDY"] == 8.0
    assert day7["TVSTRL"] == "Start of day 6 relative to ZM001 infusion day (D0) (planned day 7)"
    assert day7["TVENRL"] == "End of day 8 relative to ZM001 infusion day (D0)"
    assert by_name["Month 24"]["VISITDY"] == 731.0
    assert {r["ARMCD"] for r in tv} == {None}


def test_ti_has_every_eligibility_criterion_of_the_ie_form(
    demo_engine: Engine, zm001: Study, specs: SdtmSpecs
) -> None:
    ti = design_tables(demo_engine, zm001, specs)["TI"]
    criteria = zm001.forms["F.IE"].item_groups[0].rows
    assert [(r["IETESTCD"], r["IETEST"], r["IECAT"]) for r in ti] == [
        (row["IETESTCD"], row["IETEST"], row["IECAT"]) for row in criteria
    ]
    assert len(ti) == 24
    assert ti[4]["IETEST"] == "Age 18 to 70 years inclusive at consent"
    assert {r["IECAT"] for r in ti[:11]} == {"INCLUSION"}
    assert {r["IECAT"] for r in ti[11:]} == {"EXCLUSION"}
    assert {r["TIVERS"] for r in ti} == {"1.0"}


def test_design_datasets_are_written_in_every_format_and_listed_in_a_valid_define(
    demo_engine: Engine, consented: dict[int, int], zm001: Study, specs: SdtmSpecs, tmp_path: Path
) -> None:
    with Session(demo_engine) as session:
        datasets = write_sdtm(session, zm001, specs, tmp_path, ExportScope(study_id=zm001.id))
    written: dict[str, SdtmDataset] = {dataset.name: dataset for dataset in datasets}
    for name in DESIGN:
        dataset = written[name]
        assert set(dataset.files) == {"xpt", "json", "csv"}
        assert all(path.is_file() for path in dataset.files.values())
        assert check_dataset(dataset, specs, zm001) == [], name
        for fmt in ("json", "csv", "xpt"):
            columns, values = read_written(replace(dataset, files={fmt: dataset.files[fmt]}))
            assert columns == [  # permissible variables null in every row are dropped
                var.name
                for var in domain(specs, name).variables
                if var.core != "Perm" or dataset.has_variable(var.name)
            ]
            assert len(values) == dataset.rows
    ts_columns, ts_rows = read_written(written["TS"])
    start = next(row for row in ts_rows if row[ts_columns.index("TSPARMCD")] == "SSTDTC")
    assert start[ts_columns.index("TSVAL")] == "2026-02-03"
    write_define(zm001, specs, datasets, tmp_path)
    tree = etree.parse(str(tmp_path / "define.xml"))
    assert define_schema().validate(tree), define_schema().error_log
    for name in DESIGN:
        (group,) = tree.xpath(f"//odm:ItemGroupDef[@Name='{name}']", namespaces=NS)
        assert group.find("def:Class", NS).get("Name") == "TRIAL DESIGN"
        refs = [ref.get("ItemOID") for ref in group.findall("odm:ItemRef", NS)]
        assert refs == [
            f"IT.{name}.{var.name}"
            for var in domain(specs, name).variables
            if written[name].has_variable(var.name)
        ]
    (key,) = tree.xpath("//odm:ItemGroupDef[@Name='TS']/odm:ItemRef[@KeySequence='2']",
                        namespaces=NS)  # fmt: skip
    assert key.get("ItemOID") == "IT.TS.TSPARMCD"


def domain(specs: SdtmSpecs, name: str) -> DomainSpec:
    spec = specs.domain(name)
    assert spec is not None, name
    return spec


def test_a_study_without_a_design_section_gets_the_parameters_it_gives(
    demo_engine: Engine,
) -> None:
    ht201_dir = REPO / "tests" / "studies" / "HT201"
    ht201 = replace(load_study(ht201_dir / "forms"), db_id=1)
    assert ht201.info.design is None
    ht201_specs = load_sdtm_specs(ht201_dir / "exports", ht201)
    with Session(demo_engine) as session:  # no HT201 subject consented: no SSTDTC
        ts, tv = (
            rows(trial_design_table(session, ht201, ht201_specs, domain(ht201_specs, name)))
            for name in ("TS", "TV")
        )
    assert {r["TSPARMCD"]: r["TSVAL"] for r in ts} == {
        "SPONSOR": "TrialDesk test sponsor",
        "NARMS": "1",
        "SDTMVER": "2.0",
        "SDTIGVER": "3.4",
        "TERMVER": "CDISC CT 2025-09-26",
    }
    assert [(r["VISITNUM"], r["VISIT"], r["VISITDY"]) for r in tv] == [
        (10.0, "Screening", None),
        (20.0, "Day 1", 1.0),
        (30.0, "Week 4", 29.0),
        (40.0, "Week 12", 85.0),
    ]


def test_study_check_reports_broken_trial_design_definitions_with_file_and_line(
    zm001: Study, tmp_path: Path
) -> None:
    exports, forms = tmp_path / "exports", tmp_path / "forms"
    shutil.copytree(REPO / "exports", exports)
    shutil.copytree(REPO / "forms", forms)
    ts = (exports / "TS.yaml").read_text().replace("item: TSVALCD", "item: TSCODE")
    ts = ts.replace("constant: TS}", "derivation: domain}")
    (exports / "TS.yaml").write_text(ts)
    study_yaml = (
        (forms / "study.yaml").read_text().replace("period: EP.SCREENING", "period: EP.SCR")
    )
    (forms / "study.yaml").write_text(study_yaml)

    def line_of(text: str, fragment: str) -> int:
        return next(n for n, line in enumerate(text.splitlines(), start=1) if fragment in line)

    assert [str(problem) for problem in sdtm_problems(exports, zm001)] == [
        f"exports/TS.yaml:{line_of(ts, 'derivation: domain')}: variables[1].derivation: "
        "a trial-design variable reads a field of its record or is constant",
        f"exports/TS.yaml:{line_of(ts, 'item: TSCODE')}: variables[6].item: TS records have no "
        "field TSCODE (they have STUDYID, TSSEQ, TSPARMCD, TSPARM, TSVAL, TSVALCD, TSVCDREF, "
        "TSVCDVER)",
    ]
    assert [str(problem) for problem in study_problems(forms)] == [
        f"forms/study.yaml:{line_of(study_yaml, 'period: EP.SCR')}: "
        "design.arm_assignment.period: unknown period EP.SCR"
    ]

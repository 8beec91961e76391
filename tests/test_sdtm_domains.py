"""SDTM AE, EX, LB, VS, CM and MH of the demo study, as a reviewer reads them: CRS and ICANS
episodes appear once, as their AE, with the episode's derived ASTCT grade; the DLT flag is in
SUPPAE; a creatinine entered in mg/dL is in umol/L in the standard result; the baseline flag
marks the last value before the infusion only; EX has the infusion and the lymphodepletion
drug-days; no study day is 0; VISITNUM follows the schedule; the written datasets pass the
SDTMIG rule checks. The demo enters no medical history, medications or creatinine in mg/dL,
so one subject gets them here through the same service the pages use."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pyreadstat
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf import reads
from app.crf.changes import FormRef
from app.crf.engine import RawRows
from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.models import FormData, ItemData, ItemGroupData, StudyEventData, Subject
from app.sdtm.build import write_sdtm
from app.sdtm.dataset import SdtmDataset
from app.sdtm.derive import Value
from app.sdtm.rules import check_dataset, read_written
from app.sdtm.spec import SdtmSpecs, load_sdtm_specs
from app.study.loader import LOG_EVENT_OID, Study, find_item
from tests import factories
from tests.conftest import REPO, migrated_database

DOMAINS = ("AE", "EX", "LB", "VS", "CM", "MH")
SUBJECT = "02-001"
"""The demo subject (site 02, DL1, in follow-up for a year) given the extra data below."""
Record = dict[str, Value]


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(REPO / "exports", zm001)


def _demo_with_history(url: str, study: Study) -> Engine:
    """The whole demo plus, for SUBJECT, medical history, SLE history with prior
    therapies, a concomitant medication, an unscheduled chemistry panel with creatinine in
    mg/dL, and a DLT assessment citing its first AE."""
    engine = make_engine(url)
    load_demo(engine, study, subjects=len(SCENARIOS))
    with Session(engine) as session:
        subject = session.exec(select(Subject).where(Subject.subject_key == SUBJECT)).one()
        infusion = _item(session, subject, "IT.EX.EXSTDTM")
        d0 = date.fromisoformat(infusion[:10])
        save = _saver(session, study, subject, "investigator2")
        save("SE.SCR", "F.MH", {
            "IG.MH": {1: {"MHYN": "Y"}},
            "IG.MH.MHLOG": {1: {"MHCAT": "CARDIOVASCULAR", "MHTERM": "Hypertension",
                                "MHSTDAT": "2019-05", "MHONGO": "Y", "MHTOXGR": "1"}},
        })  # fmt: skip
        save("SE.SCR", "F.SLEHX", {
            "IG.SLEHX": {1: {"SLEDIAGDT": "2015-03", "ORGHX": ["MUCOCUTANEOUS"],
                             "REFRACYN": "Y"}},
            "IG.SLEHX.PRIORTX": {
                1: {"PTRT": "PREDNISONE", "PTSTDAT": "2015-03", "PTRSN": "ONGOING",
                    "PTMAXDOS": "60", "PTDOSU": "mg/day"},
                2: {"PTRT": "MYCOPHENOLATE", "PTSTDAT": "2016", "PTENDAT": "2020-06-15",
                    "PTRSN": "INADEQUATE RESPONSE", "PTMAXDOS": "2000", "PTDOSU": "mg/day"},
                3: {"PTRT": "PLASMA EXCHANGE", "PTSTDAT": "2021-02", "PTENDAT": "2021-02",
                    "PTRSN": "OTHER", "PTRSNSP": "Course completed"},
            },
        })  # fmt: skip
        save(LOG_EVENT_OID, "F.CM", {
            "IG.CM": {1: {"CMTRT": "Prednisone", "CMINDC": "SLE", "CMCAT": "GLUCOCORTICOID",
                          "CMGCAGT": "PREDNISONE", "CMDOSE": "10", "CMDOSU": "mg",
                          "CMDOSFRQ": "QD", "CMROUTE": "ORAL", "CMSTDAT": "2024",
                          "CMONGO": "Y"},
                      2: {"CMTRT": "Tocilizumab", "CMINDC": "CRS", "CMCAT": "ANTI-CYTOKINE",
                          "CMDOSE": "480", "CMDOSU": "mg", "CMDOSFRQ": "ONCE",
                          "CMROUTE": "INTRAVENOUS", "CMSTDAT": (d0 + timedelta(days=10)).isoformat(),
                          "CMONGO": "N", "CMENDAT": (d0 + timedelta(days=10)).isoformat()}},
        })  # fmt: skip
        panel = d0 + timedelta(days=40)
        factories.date_visit(session, study, subject, "SE.UNS", panel, by="investigator2")
        save("SE.UNS", "F.LBCHEM", {
            "IG.LBCHEM": {1: {"LBDAT": panel.isoformat(), "LBTIM": "08:10"}},
            "IG.LBCHEM.LB": {
                n: {"LBORRES": "1.2", "LBORRESU": "mg/dL", "LBORNRLO": "0.5", "LBORNRHI": "1.1",
                    "LBCLSIG": "N"} if n == CREATININE_ROW
                else {"LBSTAT": "NOT DONE", "LBREASND": "NOT DONE PER PROTOCOL"}
                for n in range(1, len(_preset(study, "F.LBCHEM", "IG.LBCHEM.LB")) + 1)
            },
        })  # fmt: skip
        not_done = {"LBSTAT": "NOT DONE", "LBREASND": "SAMPLE NOT COLLECTED"}
        save("SE.D14", "F.LBIMM", {
            "IG.LBIMM": {1: {"LBDAT": (d0 + timedelta(days=14)).isoformat()}},
            "IG.LBIMM.LB": {
                1: {"LBORRTIT": "1:160", "LBCLSIG": "N"},
                2: {"LBORRPAT": "HOMOGENEOUS", "LBCLSIG": "N"},
                3: not_done,
                4: {"LBORRESC": "NEGATIVE"},
                5: {"LBORRES": "75", "LBORRESU": "mg/dL", "LBORNRLO": "90", "LBORNRHI": "180",
                    "LBCLSIG": "N"},
                6: not_done, 7: not_done, 8: not_done,
            },
        })  # fmt: skip
        in_window = session.exec(select(Subject).where(Subject.subject_key == DLT_SUBJECT)).one()
        # EC057: a DLT needs an AE marked as meeting the DLT criteria, so AE 1 is marked first.
        ae_form = study.form("F.AE")
        stored = reads.load_form(session, in_window, ae_form, FormRef(LOG_EVENT_OID, 1, "F.AE", 1))
        assert stored is not None
        multichoice = {
            i.name for g in ae_form.item_groups for i in g.items if i.type == "multichoice"
        }
        ae_1 = {
            name: value.split(",") if name in multichoice and value else value
            for name, value in stored.rows["IG.AE"][1].items()
        } | {"AEDLTYN": "Y"}
        flagged = factories.save(
            session, study, in_window, "F.AE", {"IG.AE": {1: ae_1}}, event=LOG_EVENT_OID,
            reason="Meets the DLT criteria", by="investigator3",
        )  # fmt: skip
        assert flagged.saved, flagged.evaluation.errors
        _saver(session, study, in_window, "investigator3")("SE.D28", "F.DLT", {
            "IG.DLT": {1: {"DLTEVAL": "Y", "DLTYN": "Y", "DLTCRIT": ["DLT09"],
                           "DLTOTHSP": "Judged dose-limiting by the DSMB", "DLTAEID": "1",
                           "DSMBDAT": date.today().isoformat(), "DSMBCONF": "Y"}},
        })  # fmt: skip
    return engine


DLT_SUBJECT = "03-005"
"""The demo subject infused 9 days ago (expansion, DL3), whose DLT assessment cites AE 1."""
CREATININE_ROW = 9
"""Position of CREAT among the preset rows of LBCHEM (checked in `_demo_with_history`)."""


def _preset(study: Study, form_oid: str, group_oid: str) -> tuple[dict[str, str], ...]:
    rows = next(g.rows for g in study.form(form_oid).item_groups if g.oid == group_oid)
    assert rows[CREATININE_ROW - 1]["LBTESTCD"] == "CREAT"
    return rows


def _item(session: Session, subject: Subject, item_oid: str) -> str:
    value = session.exec(
        select(ItemData.value)
        .join(ItemGroupData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
        .join(FormData, col(ItemGroupData.form_data_id) == col(FormData.id))
        .join(StudyEventData, col(FormData.study_event_id) == col(StudyEventData.id))
        .where(col(StudyEventData.subject_id) == subject.id, ItemData.item_oid == item_oid)
    ).first()
    assert value
    return value


def _saver(
    session: Session, study: Study, subject: Subject, username: str
) -> Callable[[str, str, RawRows], None]:
    """Saves complete forms for `subject` as `username` (its site's investigator)."""

    def save(event_oid: str, form_oid: str, rows: RawRows) -> None:
        outcome = factories.save(
            session, study, subject, form_oid, rows, event=event_oid, complete=True, by=username
        )
        assert outcome.saved, outcome.evaluation.errors

    return save


@pytest.fixture(scope="module")
def sqlite_demo(zm001: Study, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with migrated_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        engine = _demo_with_history(url, zm001)
        yield engine
        engine.dispose()


def _export(
    engine: Engine, study: Study, specs: SdtmSpecs, out_dir: Path
) -> dict[str, SdtmDataset]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with Session(engine) as session:
        return {d.name: d for d in write_sdtm(session, study, specs, out_dir)}


@pytest.fixture(scope="module")
def datasets(
    sqlite_demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SdtmDataset]:
    return _export(sqlite_demo, zm001, specs, tmp_path_factory.mktemp("sdtm"))


def records(dataset: SdtmDataset) -> list[Record]:
    """The dataset's records as written in Dataset-JSON."""
    columns, rows = read_written(dataset)
    return [dict(zip(columns, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def tables(datasets: dict[str, SdtmDataset]) -> dict[str, list[Record]]:
    return {name: records(dataset) for name, dataset in datasets.items()}


def supp(tables: dict[str, list[Record]], domain: str, qnam: str) -> dict[tuple[str, int], str]:
    """(USUBJID, --SEQ) -> QVAL of one qualifier of SUPP<domain>."""
    return {
        (str(r["USUBJID"]), int(str(r["IDVARVAL"]))): str(r["QVAL"])
        for r in tables[f"SUPP{domain}"]
        if r["QNAM"] == qnam
    }


def _episode_values(engine: Engine, form: str, link: str, grade: str) -> list[tuple[str, str, int]]:
    """(subject key, cited AE number, derived grade) of every saved episode form."""
    with Session(engine) as session:
        rows = session.exec(
            select(Subject.subject_key, ItemData.item_oid, ItemData.value, FormData.id)
            .join(StudyEventData, col(StudyEventData.subject_id) == col(Subject.id))
            .join(FormData, col(FormData.study_event_id) == col(StudyEventData.id))
            .join(ItemGroupData, col(ItemGroupData.form_data_id) == col(FormData.id))
            .join(ItemData, col(ItemData.item_group_data_id) == col(ItemGroupData.id))
            .where(col(ItemData.item_oid).in_([f"IT.{form}.{link}", f"IT.{form}.{grade}"]))
        ).all()
    episodes: dict[int | None, dict[str, str]] = defaultdict(dict)
    for key, item_oid, value, form_id in rows:
        episodes[form_id] |= {"subject": key, item_oid.rsplit(".", 1)[1]: value or ""}
    return [(e["subject"], e[link], int(float(e[grade]))) for e in episodes.values()]


# -- the mappings ---------------------------------------------------------------------------------


ROW_ITEM_DERIVATIONS = {"first_of": "items", "form_value": "item", "form_dtc": "date"}
"""Derivations reading items of the record's row: which argument names them."""


def test_derivation_arguments_name_items_of_the_source_forms(
    specs: SdtmSpecs, zm001: Study
) -> None:
    """`study check` binds derivation arguments but cannot know what they mean: a form name
    or item misspelt in `by_source` or `first_of` would silently give nulls."""
    problems = []
    for domain in DOMAINS:
        spec = specs.domain(domain)
        assert spec is not None
        forms = {zm001.forms[s.form].name: zm001.forms[s.form] for s in spec.sources if s.form}
        for source in (*spec.variables, *spec.supplemental):
            call = source.derivation
            where = f"{domain}.{getattr(source, 'name', None) or getattr(source, 'qnam', '')}"
            if call is None:
                continue
            if call.name == "by_source":
                for form_name, entry in call.args.items():
                    form = forms.get(form_name)
                    items = [entry.get("item"), entry.get("specify"), *entry.get("when", {})]
                    problems += [f"{where}: {form_name} is not a source form"] if form is None else [
                        f"{where}: {form_name} has no item {item}"
                        for item in items if item and find_item(form, item) is None
                    ]  # fmt: skip
            if call.name in ROW_ITEM_DERIVATIONS:
                named = call.args[ROW_ITEM_DERIVATIONS[call.name]]
                for item in [named] if isinstance(named, str) else named:
                    if not any(find_item(form, item) for form in forms.values()):
                        problems.append(f"{where}: no source form has item {item}")
    assert problems == []


# -- AE -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "link", "grade", "term"),
    [
        ("CRS", "CRSAEID", "CRSGRDER", "Cytokine release syndrome"),
        (
            "ICANS",
            "ICANSAEID",
            "ICANSGRDER",
            "Immune effector cell-associated neurotoxicity syndrome",
        ),
    ],
)
def test_each_episode_is_its_ae_with_the_derived_astct_grade(
    sqlite_demo: Engine, tables: dict[str, list[Record]], form: str, link: str, grade: str,
    term: str,
) -> None:  # fmt: skip
    episodes = _episode_values(sqlite_demo, form, link, grade)
    assert episodes, f"the demo has {form} episodes"
    ae = {(r["USUBJID"], r["AESPID"]): r for r in tables["AE"]}
    for subject, number, derived in episodes:
        record = ae[(f"ZM001-{subject}", number)]
        assert record["AEDECOD"] == term
        assert record["AETOXGR"] == str(derived)
    syndrome_records = [r for r in tables["AE"] if r["AEDECOD"] == term]
    assert len(syndrome_records) == len(episodes), "an episode is one AE, not two"


def test_ae_seriousness_outcome_and_relationships(tables: dict[str, list[Record]]) -> None:
    fatal = [r for r in tables["AE"] if r["AEOUT"] == "FATAL"]
    assert fatal and all(r["AESER"] == "Y" and r["AESDTH"] == "Y" for r in fatal)
    assert all(r["AETOXGR"] == "5" for r in fatal)
    not_serious = [r for r in tables["AE"] if r["AESER"] == "N"]
    assert all(r["AESDTH"] is None and r["AESHOSP"] is None for r in not_serious)
    relld = supp(tables, "AE", "AERELLD")
    neutropenia = [r for r in tables["AE"] if r["AETERM"] == "Neutrophil count decreased"]
    assert neutropenia
    assert {relld[(str(r["USUBJID"]), int(str(r["AESEQ"])))] for r in neutropenia} == {"RELATED"}
    treatment = supp(tables, "AE", "AETRT")
    for record in tables["AE"]:
        given = treatment[(str(record["USUBJID"]), int(str(record["AESEQ"])))]
        assert record["AECONTRT"] == ("N" if given == "NONE" else "Y"), record
    assert "TOCILIZUMAB,OXYGEN" in treatment.values()
    assert {r["AEREL"] for r in tables["AE"]} <= {
        "RELATED", "POSSIBLY RELATED", "UNLIKELY RELATED", "NOT RELATED", "NOT APPLICABLE"
    }  # fmt: skip


def test_dlt_flag_in_suppae(tables: dict[str, list[Record]]) -> None:
    """Asked for AEs with onset D0-D28 (study days 1-29); Y for the AE the DLT assessment
    cites, N for the others the investigator marked No."""
    dlt = supp(tables, "AE", "AEDLT")
    cited = [
        r for r in tables["AE"] if r["USUBJID"] == f"ZM001-{DLT_SUBJECT}" and r["AESPID"] == "1"
    ]
    assert len(cited) == 1
    for record in tables["AE"]:
        key = (str(record["USUBJID"]), int(str(record["AESEQ"])))
        day = record["AESTDY"]
        in_window = isinstance(day, int | float) and 1 <= day <= 29
        assert (key in dlt) == in_window, record
        if in_window:
            assert dlt[key] == ("Y" if record is cited[0] else "N"), record


# -- EX -------------------------------------------------------------------------------------------


def test_ex_has_the_infusion_and_the_lymphodepletion_drug_days(
    tables: dict[str, list[Record]],
) -> None:
    infused = {r["USUBJID"]: r for r in tables["DM"] if r["RFXSTDTC"]}
    assert len(infused) >= 10
    by_subject: dict[Value, list[Record]] = defaultdict(list)
    for record in tables["EX"]:
        by_subject[record["USUBJID"]].append(record)
    planned = supp(tables, "EX", "EXPLDOS")
    bsa = supp(tables, "EX", "EXBSA")
    for usubjid, dm in infused.items():
        zm001 = [r for r in by_subject[usubjid] if r["EXTRT"] == "ZM001"]
        assert len(zm001) == 1
        assert zm001[0]["EXSTDTC"] == dm["RFXSTDTC"] and zm001[0]["EXENDTC"] == dm["RFXENDTC"]
        assert zm001[0]["EXDOSU"] == "10^6 cells" and zm001[0]["EXSTDY"] == 1
        assert zm001[0]["EPOCH"] == "TREATMENT" and zm001[0]["VISITNUM"] == 6
        drug_days = [r for r in by_subject[usubjid] if r["EXCAT"] == "LYMPHODEPLETING CHEMOTHERAPY"]
        assert sorted((r["EXSTDY"], r["EXTRT"]) for r in drug_days) == [
            (day, drug) for day in (-5, -4, -3) for drug in ("CYCLOPHOSPHAMIDE", "FLUDARABINE")
        ]
        for record in drug_days:
            key = (str(usubjid), int(str(record["EXSEQ"])))
            expected = float(planned[key]) * float(bsa[key])
            assert record["EXDOSU"] == "mg" and record["EXDOSFRQ"] == "QD"
            assert record["EXDOSE"] == pytest.approx(expected, abs=0.06)
            assert record["EPOCH"] == "LYMPHODEPLETION"


# -- LB -------------------------------------------------------------------------------------------


def test_creatinine_in_mg_dl_is_converted_to_umol_l(tables: dict[str, list[Record]]) -> None:
    usubjid = f"ZM001-{SUBJECT}"
    [creatinine] = [
        r for r in tables["LB"] if r["USUBJID"] == usubjid and r["LBORRESU"] == "mg/dL"
        and r["LBCAT"] == "CHEMISTRY"
    ]  # fmt: skip
    assert creatinine["LBTESTCD"] == "CREAT" and creatinine["LBORRES"] == "1.2"
    assert creatinine["LBSTRESN"] == 106.08 == pytest.approx(1.2 * 88.4)
    assert creatinine["LBSTRESC"] == "106.08" and creatinine["LBSTRESU"] == "umol/L"
    assert (creatinine["LBSTNRLO"], creatinine["LBSTNRHI"]) == (44.2, 97.24)
    assert creatinine["LBNRIND"] == "HIGH"
    assert (creatinine["VISIT"], creatinine["VISITNUM"]) == ("Unscheduled 1", 99.01)
    assert creatinine["LBDY"] == 41 and str(creatinine["LBDTC"]).endswith("T08:10:00")
    not_done = [
        r for r in tables["LB"] if r["USUBJID"] == usubjid and r["VISITNUM"] == 99.01
        and r["LBSTAT"] == "NOT DONE"
    ]  # fmt: skip
    assert len(not_done) == 21
    assert all(r["LBORRES"] is None and r["LBREASND"] for r in not_done)


def test_qualitative_results_and_complement_in_mg_dl(tables: dict[str, list[Record]]) -> None:
    immunology = {
        r["LBTESTCD"]: r
        for r in tables["LB"]
        if r["USUBJID"] == f"ZM001-{SUBJECT}" and r["LBCAT"] == "IMMUNOLOGY"
    }
    assert set(immunology) == {"ANA", "ANAPAT", "DSDNAAB", "SMAB", "C3", "C4", "CH50", "DAT"}
    ana, smab, c3 = immunology["ANA"], immunology["SMAB"], immunology["C3"]
    assert (ana["LBORRES"], ana["LBSTRESC"], ana["LBSTRESN"]) == ("1:160", "1:160", None)
    assert ana["LBNRIND"] == "ABNORMAL" and ana["LBSPEC"] == "SERUM"
    assert (smab["LBORRES"], smab["LBSTRESC"], smab["LBNRIND"]) == ("NEGATIVE",) * 2 + ("NORMAL",)
    assert immunology["ANAPAT"]["LBORRES"] == "HOMOGENEOUS"
    assert (c3["LBORRES"], c3["LBORRESU"], c3["LBSTRESU"]) == ("75", "mg/dL", "g/L")
    assert c3["LBSTRESN"] == pytest.approx(0.75) and c3["LBSTRESC"] == "0.75"
    assert (c3["LBSTNRLO"], c3["LBSTNRHI"], c3["LBNRIND"]) == (0.9, 1.8, "LOW")
    assert immunology["C4"]["LBSTAT"] == "NOT DONE" and immunology["C4"]["LBSTRESC"] is None
    assert immunology["C4"]["LBREASND"] == "SAMPLE NOT COLLECTED"


def test_demo_results_in_si_units_keep_their_values(tables: dict[str, list[Record]]) -> None:
    numeric = [r for r in tables["LB"] if r["LBORRESU"] and r["LBORRESU"] != r["LBSTRESU"]]
    assert {(r["LBTESTCD"], r["LBORRESU"]) for r in numeric} == {
        ("CREAT", "mg/dL"),
        ("C3", "mg/dL"),
    }
    numeric = [r for r in tables["LB"] if r["LBORRESU"] and r["LBORRESU"] == r["LBSTRESU"]]
    assert numeric
    for record in numeric:
        assert record["LBSTRESU"] == record["LBORRESU"]
        assert record["LBSTRESN"] == pytest.approx(float(str(record["LBORRES"])))
    flagged = [r for r in tables["LB"] if r["LBNRIND"] in ("LOW", "HIGH")]
    clinsig = supp(tables, "LB", "LBCLSIG")
    assert flagged
    assert all((str(r["USUBJID"]), int(str(r["LBSEQ"]))) in clinsig for r in flagged)


@pytest.mark.parametrize(
    ("domain", "group"), [("LB", ("LBCAT", "LBTESTCD")), ("VS", ("VSTESTCD",))]
)
def test_baseline_flag_on_the_last_value_before_the_infusion_only(
    tables: dict[str, list[Record]], domain: str, group: tuple[str, ...]
) -> None:
    exposure = {r["USUBJID"]: str(r["RFXSTDTC"]) for r in tables["DM"] if r["RFXSTDTC"]}
    tests: dict[tuple[Value, ...], list[Record]] = defaultdict(list)
    for record in tables[domain]:
        if record[f"{domain}ORRES"] is not None:
            tests[(record["USUBJID"], *(record[g] for g in group))].append(record)
    flagged_tests = 0
    for (usubjid, *_), observations in tests.items():
        flags = [r for r in observations if r[f"{domain}LOBXFL"] == "Y"]
        before = [r for r in observations if str(r[f"{domain}DTC"]) <= exposure.get(usubjid, "")]
        if usubjid not in exposure or not before:
            assert flags == []
            continue
        latest = max(str(r[f"{domain}DTC"]) for r in before)
        assert len(flags) == 1 and flags[0][f"{domain}DTC"] == latest
        flagged_tests += 1
    assert flagged_tests > 50


# -- VS, CM, MH -----------------------------------------------------------------------------------


def test_vital_signs_are_one_record_per_measurement(tables: dict[str, list[Record]]) -> None:
    d0 = [r for r in tables["VS"] if r["VISITNUM"] == 6 and r["VSTESTCD"] == "SYSBP"]
    assert {r["VSTPT"] for r in d0} == {"PRE-DOSE", "DURING INFUSION", "POST-INFUSION"}
    pre_dose = [r for r in d0 if r["VSTPT"] == "PRE-DOSE"]
    assert all(r["VSLOBXFL"] == "Y" and r["VSDY"] == 1 for r in pre_dose)
    assert all(r["VSORRESU"] == "mmHg" and r["VSSTRESN"] == float(str(r["VSORRES"])) for r in d0)
    assert {r["VSTPT"] for r in tables["VS"] if r["VISITNUM"] != 6} == {None}


def test_medications_and_prior_sle_therapies(tables: dict[str, list[Record]]) -> None:
    cm = sorted(
        (r for r in tables["CM"] if r["USUBJID"] == f"ZM001-{SUBJECT}"),
        key=lambda r: int(str(r["CMSEQ"])),
    )  # in order of entry, as CMSEQ numbers them (the dataset is in key order)
    assert [(r["CMTRT"], r["CMCAT"], r["CMSCAT"]) for r in cm] == [
        ("PREDNISONE", "GLUCOCORTICOID", "PRIOR SLE THERAPY"),
        ("MYCOPHENOLATE", "IMMUNOSUPPRESSANT", "PRIOR SLE THERAPY"),
        ("Prednisone", "GLUCOCORTICOID", None),
        ("Tocilizumab", "ANTI-CYTOKINE", None),
    ], "plasma exchange is a procedure, not a medication"
    prior, mycophenolate, current, tocilizumab = cm
    assert [r["EPOCH"] for r in cm] == [None, None, None, "FOLLOW-UP"], "from complete dates"
    assert (tocilizumab["CMSTDY"], tocilizumab["CMENDY"], tocilizumab["CMENRTPT"]) == (11, 11, None)
    assert (prior["CMSTDTC"], prior["CMENRTPT"], prior["CMSTDY"]) == ("2015-03", "ONGOING", None)
    assert (mycophenolate["CMSTDTC"], mycophenolate["CMENDTC"]) == ("2016", "2020-06-15")
    assert isinstance(mycophenolate["CMENDY"], int) and mycophenolate["CMENDY"] < 0
    assert (current["CMDOSE"], current["CMDOSU"], current["CMROUTE"]) == (10, "mg", "ORAL")
    assert current["CMSTDTC"] == "2024" and current["CMENRTPT"] == "ONGOING"
    seq = {r["CMTRT"]: int(str(r["CMSEQ"])) for r in cm}
    usubjid = f"ZM001-{SUBJECT}"
    assert supp(tables, "CM", "CMPREDEQ")[(usubjid, seq["Prednisone"])] == "10"
    assert supp(tables, "CM", "CMMAXDOS")[(usubjid, seq["MYCOPHENOLATE"])] == "2000"


def test_medical_history_includes_the_sle_diagnosis(tables: dict[str, list[Record]]) -> None:
    mh = [r for r in tables["MH"] if r["USUBJID"] == f"ZM001-{SUBJECT}"]
    by_term = {r["MHTERM"]: r for r in mh}
    assert set(by_term) == {"Hypertension", "Systemic lupus erythematosus"}
    sle = by_term["Systemic lupus erythematosus"]
    assert (sle["MHCAT"], sle["MHSTDTC"], sle["MHENRTPT"]) == (
        "PRIMARY DIAGNOSIS",
        "2015-03",
        "ONGOING",
    )
    hypertension = by_term["Hypertension"]
    assert (hypertension["MHCAT"], hypertension["MHSTDTC"], hypertension["MHTOXGR"]) == (
        "CARDIOVASCULAR", "2019-05", "1"
    )  # fmt: skip
    assert all(r["EPOCH"] == "SCREENING" and isinstance(r["MHDY"], int) for r in mh)
    assert all(int(str(r["MHDY"])) < 0 for r in mh)


# -- across domains -------------------------------------------------------------------------------


def test_no_study_day_zero_and_visits_from_the_schedule(
    tables: dict[str, list[Record]], zm001: Study
) -> None:
    schedule = {float(v.visitnum): v.name for v in zm001.schedule.visits}
    days = 0
    for domain in DOMAINS:
        for record in tables[domain]:
            for name, value in record.items():
                if name.endswith("DY") and value is not None:
                    assert value != 0, (domain, name, record)
                    days += 1
            if record.get("VISITNUM") is not None:
                number = float(str(record["VISITNUM"]))
                base = schedule[float(int(number))]
                assert record["VISIT"] == base or str(record["VISIT"]).startswith(base)
    assert days > 1000


def test_every_domain_passes_the_sdtm_rule_checks(
    datasets: dict[str, SdtmDataset], specs: SdtmSpecs, zm001: Study
) -> None:
    names = [name for name in datasets if name in DOMAINS or name[4:] in DOMAINS]
    assert len(names) == 2 * len(DOMAINS)
    problems = [p for name in names for p in check_dataset(datasets[name], specs, zm001)]
    assert problems == []


def test_xpt_gives_the_same_values_as_dataset_json(datasets: dict[str, SdtmDataset]) -> None:
    for name in ("AE", "LB", "SUPPAE"):
        frame, _meta = pyreadstat.read_xport(str(datasets[name].files["xpt"]))
        written = records(datasets[name])
        assert len(frame) == len(written) > 0
        for row, record in zip(frame.to_dict("records"), written, strict=True):
            for column, value in record.items():
                cell = row[column]
                if value is None:
                    assert cell == "" or cell != cell, (name, column)  # blank text or NaN
                elif isinstance(value, str):
                    assert cell == value, (name, column)
                else:
                    assert cell == pytest.approx(value), (name, column)


def test_same_export_on_postgresql(
    zm001: Study, specs: SdtmSpecs, tables: dict[str, list[Record]], tmp_path: Path
) -> None:
    with migrated_database("postgresql", tmp_path) as url:
        engine = _demo_with_history(url, zm001)
        try:
            exported = _export(engine, zm001, specs, tmp_path / "sdtm")
        finally:
            engine.dispose()
    for name in (*DOMAINS, *(f"SUPP{d}" for d in DOMAINS)):
        assert records(exported[name]) == tables[name], name

"""SDTM CE, FA, RELREC, PR, DD, EG and the product domain ZP of the demo study, as a sponsor's
SDTM programmer checks them: each CRS and ICANS episode is one CE record with its derived
ASTCT grade, its grading components are FA records about it (FAGRPID = CESPID), and RELREC
pairs it with the AE it is reported as by CESEQ and AESEQ; the leukapheresis, a procedure and
a transfusion are PR records; the death form is DD, linked to its grade 5 AE; an ECG is EG with
the interpretation's clinical significance; the product release results are ZP, whose lot is
the infused lot. The demo enters CRS, ICANS, leukapheresis, product release and death through
the write path; one subject gets a procedure, a transfusion and an ECG here the same way."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.models import Subject
from app.sdtm.build import write_sdtm
from app.sdtm.dataset import SdtmDataset
from app.sdtm.derive import Value
from app.sdtm.rules import check_dataset, read_written
from app.sdtm.spec import SdtmSpecs, load_sdtm_specs, sdtm_problems
from app.study.loader import LOG_EVENT_OID, Study, find_item
from tests import factories
from tests.conftest import REPO, migrated_database

SUBJECT = "02-001"
"""The demo subject (DL1, in follow-up) given a procedure, a transfusion and an ECG here."""
Record = dict[str, Value]
CRS_TERM = "Cytokine release syndrome"
ICANS_TERM = "Immune effector cell-associated neurotoxicity syndrome"


def _with_procedures(url: str, study: Study) -> Engine:
    engine = make_engine(url)
    load_demo(engine, study, subjects=len(SCENARIOS))
    with Session(engine) as session:
        subject = session.exec(select(Subject).where(Subject.subject_key == SUBJECT)).one()

        def save(event: str, form: str, rows: factories.Rows) -> None:
            outcome = factories.save(
                session, study, subject, form, rows, event=event, complete=True,
                by="investigator2",
            )  # fmt: skip
            assert outcome.saved, outcome.evaluation.errors

        save(LOG_EVENT_OID, "F.PR", {"IG.PR": {1: {
            "PRTRT": "Central venous catheter insertion", "PRINDC": "Venous access",
            "PRSTDAT": "2026-01",
        }}})  # fmt: skip
        save(LOG_EVENT_OID, "F.TX", {"IG.TX": {
            1: {"TXPROD": "PLATELETS", "TXDAT": (date.today() - timedelta(days=3)).isoformat(),
                "TXUNITS": "1"},
            2: {"TXPROD": "RBC", "TXDAT": (date.today() - timedelta(days=2)).isoformat(),
                "TXUNITS": "2"},
        }})  # fmt: skip
        save("SE.SCR", "F.EG", {"IG.EG": {1: {
            "EGDTC": "2025-08-01T09:30:00", "EGINTP": "ABNORMAL NCS", "EGHR": "72",
            "QRS": "96", "QT": "380", "QTCF": "410",
            "EGFIND": "Incomplete right bundle branch block",
        }}})  # fmt: skip
        enrolled = session.exec(select(Subject).where(Subject.status == "enrolled")).one()
        outcome = factories.save(
            session, study, enrolled, "F.APH",
            {"IG.APH": {1: {"APHYN": "N", "APHNDRSN": "VENOUS ACCESS FAILURE"}}},
            event="SE.APH", complete=True, by="investigator",
        )  # fmt: skip
        assert outcome.saved, outcome.evaluation.errors
    return engine


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(REPO / "exports", zm001)


@pytest.fixture(scope="module")
def datasets(
    zm001: Study, specs: SdtmSpecs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SdtmDataset]]:
    with migrated_database("sqlite", tmp_path_factory.mktemp("db")) as url:
        engine = _with_procedures(url, zm001)
        out_dir: Path = tmp_path_factory.mktemp("sdtm")
        with Session(engine) as session:
            yield {d.name: d for d in write_sdtm(session, zm001, specs, out_dir)}
        engine.dispose()


@pytest.fixture(scope="module")
def tables(datasets: dict[str, SdtmDataset]) -> dict[str, list[Record]]:
    def records(dataset: SdtmDataset) -> list[Record]:
        columns, rows = read_written(dataset)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    return {name: records(dataset) for name, dataset in datasets.items()}


def _supp(
    tables: dict[str, list[Record]], domain: str, qnam: str
) -> dict[tuple[Value, int], Value]:
    return {
        (r["USUBJID"], int(str(r["IDVARVAL"]))): r["QVAL"]
        for r in tables[f"SUPP{domain}"]
        if r["QNAM"] == qnam
    }


def _by_seq(tables: dict[str, list[Record]], domain: str) -> dict[tuple[Value, int], Record]:
    return {(r["USUBJID"], int(str(r[f"{domain}SEQ"]))): r for r in tables[domain]}


NEW_DOMAINS = ("CE", "FA", "PR", "DD", "EG", "ZP")


def test_per_form_derivations_name_items_of_their_forms(specs: SdtmSpecs, zm001: Study) -> None:
    """`study check` binds derivation arguments but cannot know that a `by_source` or
    `dtc_by_source` entry names a source form and its items: a slip would give nulls."""
    problems = []
    for domain in NEW_DOMAINS:
        spec = specs.domain(domain)
        assert spec is not None
        forms = {zm001.forms[s.form].name: zm001.forms[s.form] for s in spec.sources if s.form}
        for source in (*spec.variables, *spec.supplemental):
            call = source.derivation
            if call is None or call.name not in ("by_source", "dtc_by_source"):
                continue
            for form_name, entry in call.args.items():
                form = forms.get(form_name)
                names = [entry.get(key) for key in ("item", "specify", "date", "time")]
                problems += [f"{domain}: {form_name} is not a source form"] if form is None else [
                    f"{domain}: {form_name} has no item {name}"
                    for name in names if name and find_item(form, name) is None
                ]  # fmt: skip
    assert problems == []


def test_new_datasets_are_written_and_pass_the_rule_checks(
    datasets: dict[str, SdtmDataset], specs: SdtmSpecs, zm001: Study
) -> None:
    for name in ("CE", "SUPPCE", "FA", "PR", "SUPPPR", "DD", "EG", "SUPPEG", "ZP", "RELREC"):
        assert name in datasets
        assert datasets[name].rows, f"{name} has records"
    for name in ("CE", "FA", "PR", "DD", "EG", "ZP", "RELREC", "SUPPCE", "SUPPPR"):
        assert check_dataset(datasets[name], specs, zm001) == [], name
    assert list(datasets)[-1] == "RELREC"


def test_each_episode_is_one_ce_record_linked_to_its_ae(tables: dict[str, list[Record]]) -> None:
    ce = tables["CE"]
    assert {r["CEDECOD"] for r in ce} == {CRS_TERM, ICANS_TERM}
    ae = _by_seq(tables, "AE")
    ce_by_seq = _by_seq(tables, "CE")
    cited = _supp(tables, "CE", "CEAESPID")
    relations: dict[tuple[Value, Value], list[Record]] = {}
    for row in tables["RELREC"]:
        if row["USUBJID"] is not None:
            relations.setdefault((row["USUBJID"], row["RELID"]), []).append(row)
    pairs = {}
    for rows in relations.values():
        by_domain = {r["RDOMAIN"]: r for r in rows}
        if set(by_domain) != {"CE", "AE"}:
            continue
        assert by_domain["CE"]["IDVAR"] == "CESEQ" and by_domain["AE"]["IDVAR"] == "AESEQ"
        assert all(r["RELTYPE"] is None for r in rows)
        usubjid = rows[0]["USUBJID"]
        pairs[(usubjid, int(str(by_domain["CE"]["IDVARVAL"])))] = (
            usubjid,
            int(str(by_domain["AE"]["IDVARVAL"])),
        )
    assert set(pairs) == set(ce_by_seq), "every episode is related to exactly one AE"
    for key, record in ce_by_seq.items():
        linked = ae[pairs[key]]
        assert linked["AESPID"] == cited[key]
        assert linked["AEDECOD"] == record["CEDECOD"]
        assert linked["AETOXGR"] == record["CETOXGR"]
        assert record["CEPRESP"] == "Y" and record["CEOCCUR"] == "Y"
        assert record["CESTDY"] is not None and float(str(record["CESTDY"])) >= 1
    scale = _supp(tables, "CE", "CETOXSCL")
    assert set(scale.values()) == {"ASTCT 2019"} and len(scale) == len(ce)


def test_grading_components_are_findings_about_their_episode(
    tables: dict[str, list[Record]],
) -> None:
    fa = tables["FA"]
    for episode in tables["CE"]:
        about = [
            r for r in fa if r["USUBJID"] == episode["USUBJID"]
            and r["FAGRPID"] == episode["CESPID"]
        ]  # fmt: skip
        assert about, episode
        assert {r["FAOBJ"] for r in about} == {episode["CEDECOD"]}
        grades = [int(float(str(r["FASTRESN"]))) for r in about if r["FATESTCD"] == "TOXGR"]
        assert max(grades) == int(str(episode["CETOXGR"])) or episode["CETOXGR"] == "5"
    crs_tests = {r["FATESTCD"] for r in fa if r["FAOBJ"] == CRS_TERM}
    assert {"MAXTEMP", "FEVER", "HYPOTENS", "NVASOPR", "O2DEVICE", "TOXGR"} <= crs_tests
    temperature = next(r for r in fa if r["FATESTCD"] == "MAXTEMP")
    assert temperature["FAORRESU"] == "C" and temperature["FASTRESN"] is not None
    # the demo's grade 1 ICANS: ICE 8 and awakening spontaneously, ICE 10 and alert next morning
    icans = [r for r in fa if r["FAOBJ"] == ICANS_TERM]
    assert [r["FASTRESN"] for r in icans if r["FATESTCD"] == "ICETOT"] == [8, 10]
    assert [r["FAORRES"] for r in icans if r["FATESTCD"] == "LOC"] == [
        "AWAKENS SPONTANEOUSLY", "ALERT"
    ]  # fmt: skip
    assert [r["FASTRESN"] for r in icans if r["FATESTCD"] == "TOXGR"] == [1, 0]
    device = next(r for r in fa if r["FATESTCD"] == "O2DEVICE")
    assert device["FASTRESN"] is None and device["FASTRESC"] == device["FAORRES"]
    dataset_level = [r for r in tables["RELREC"] if r["USUBJID"] is None]
    assert {(r["RDOMAIN"], r["IDVAR"], r["RELTYPE"], r["RELID"]) for r in dataset_level} == {
        ("CE", "CESPID", "ONE", "FA-CE"), ("FA", "FAGRPID", "MANY", "FA-CE")
    }  # fmt: skip


def test_leukapheresis_procedure_and_transfusions_are_procedures(
    tables: dict[str, list[Record]],
) -> None:
    usubjid = f"ZM001-{SUBJECT}"
    mine = {r["PRTRT"]: r for r in tables["PR"] if r["USUBJID"] == usubjid}
    assert set(mine) == {
        "LEUKAPHERESIS", "Central venous catheter insertion", "PLATELET TRANSFUSION",
        "RED BLOOD CELL TRANSFUSION",
    }  # fmt: skip
    # PRSEQ follows the order of entry, whatever order the rows are sorted in
    assert sorted(mine, key=lambda name: float(str(mine[name]["PRSEQ"]))) == [
        "LEUKAPHERESIS", "Central venous catheter insertion", "PLATELET TRANSFUSION",
        "RED BLOOD CELL TRANSFUSION",
    ]  # fmt: skip
    collection = mine["LEUKAPHERESIS"]
    procedure = mine["Central venous catheter insertion"]
    platelets, red_cells = mine["PLATELET TRANSFUSION"], mine["RED BLOOD CELL TRANSFUSION"]
    assert collection["PRCAT"] == "CELL COLLECTION" and collection["PROCCUR"] == "Y"
    assert collection["EPOCH"] == "CELL COLLECTION" and collection["PRSPID"] == "1"
    assert len(str(collection["PRSTDTC"])) == 19 and collection["PRENDTC"] > collection["PRSTDTC"]
    assert float(str(collection["PRSTDY"])) < 0, "before the infusion"
    volume = _supp(tables, "PR", "APHVOL")[(usubjid, int(str(collection["PRSEQ"])))]
    assert 150 <= float(str(volume)) <= 250
    assert procedure["PRINDC"] == "Venous access" and procedure["PRSTDTC"] == "2026-01"
    assert procedure["PRSTDY"] is None, "partial date"
    assert (platelets["PRCAT"], platelets["PRDOSE"], platelets["PRDOSU"]) == (
        "TRANSFUSION", 1, "UNIT"
    )  # fmt: skip
    assert red_cells["PRDOSE"] == 2
    assert red_cells["PRSTDTC"] == (date.today() - timedelta(days=2)).isoformat()
    collected = {r["USUBJID"] for r in tables["PR"] if r["PROCCUR"] == "Y"}
    assert len(collected) == len([s for s in SCENARIOS if s.reached("leukapheresed")])
    (not_done,) = [r for r in tables["PR"] if r["PROCCUR"] == "N"]
    assert (not_done["PRTRT"], not_done["PRPRESP"], not_done["PRSTDTC"]) == (
        "LEUKAPHERESIS", "Y", None
    )  # fmt: skip
    reason = _supp(tables, "PR", "PRREASND")
    assert reason == {(not_done["USUBJID"], int(str(not_done["PRSEQ"]))): "VENOUS ACCESS FAILURE"}


def test_death_details_and_their_ae(tables: dict[str, list[Record]]) -> None:
    dd = tables["DD"]
    (usubjid,) = {r["USUBJID"] for r in dd}
    results = {r["DDTESTCD"]: r["DDORRES"] for r in dd}
    assert results["PRCDTH"] == "Pneumonia with respiratory failure"
    assert results["PRCDTHCT"] == "INFECTION" and results["AUTOPSY"] == "N"
    assert results["RELTRT"] == "UNLIKELY RELATED" and results["DTHDLTW"] == "N"
    assert "SECDTH" not in results, "no contributing cause entered"
    dm = next(r for r in tables["DM"] if r["USUBJID"] == usubjid)
    assert {r["DDDTC"] for r in dd} == {dm["DTHDTC"]}
    dd_seqs = {int(str(r["DDSEQ"])) for r in dd}
    links = [r for r in tables["RELREC"] if r["USUBJID"] == usubjid]
    relids = {r["RELID"] for r in links if r["RDOMAIN"] == "DD"}
    assert {int(str(r["IDVARVAL"])) for r in links if r["RDOMAIN"] == "DD"} == dd_seqs
    (relid,) = relids
    (ae_link,) = [r for r in links if r["RELID"] == relid and r["RDOMAIN"] == "AE"]
    fatal = _by_seq(tables, "AE")[(usubjid, int(str(ae_link["IDVARVAL"])))]
    assert fatal["AEOUT"] == "FATAL" and fatal["AETOXGR"] == "5"


def test_ecg_findings(tables: dict[str, list[Record]]) -> None:
    usubjid = f"ZM001-{SUBJECT}"
    eg = {r["EGTESTCD"]: r for r in tables["EG"] if r["USUBJID"] == usubjid}
    assert set(eg) == {"EGHRMN", "QRSAG", "QTAG", "QTCFAG", "INTP"}, "no PR interval entered"
    assert (eg["QTCFAG"]["EGORRES"], eg["QTCFAG"]["EGSTRESN"], eg["QTCFAG"]["EGSTRESU"]) == (
        "410", 410, "msec"
    )  # fmt: skip
    interpretation = eg["INTP"]
    assert (interpretation["EGORRES"], interpretation["EGSTRESC"]) == ("ABNORMAL NCS", "ABNORMAL")
    assert interpretation["EGCLSIG"] == "N" and eg["QTAG"]["EGCLSIG"] is None
    assert interpretation["EGSTRESN"] is None
    assert all(r["VISIT"] == "Screening" and r["EGLOBXFL"] == "Y" for r in eg.values())
    findings = _supp(tables, "EG", "EGFIND")
    assert findings == {
        (usubjid, int(str(interpretation["EGSEQ"]))): "Incomplete right bundle branch block"
    }


def test_product_release_is_the_custom_findings_domain(tables: dict[str, list[Record]]) -> None:
    ex_lots = {r["USUBJID"]: r["EXLOT"] for r in tables["EX"] if r["EXTRT"] == "ZM001"}
    zp = tables["ZP"]
    released = [r for r in zp if r["ZPTESTCD"] == "RELSTAT" and r["ZPORRES"] == "RELEASED"]
    assert released and {r["USUBJID"] for r in released} >= set(ex_lots)
    for record in released:
        if record["USUBJID"] in ex_lots:
            assert record["ZPREFID"] == ex_lots[record["USUBJID"]]
        results = {
            r["ZPTESTCD"]: r for r in zp
            if r["USUBJID"] == record["USUBJID"] and r["ZPREFID"] == record["ZPREFID"]
        }  # fmt: skip
        assert set(results) == {"RELSTAT", "CARVIAB", "VIABLE", "TRANSEFF", "REMFG"}
        assert (
            results["VIABLE"]["ZPORRESU"] == "%"
            and 85 <= float(str(results["VIABLE"]["ZPSTRESN"])) <= 97
        )
        assert results["CARVIAB"]["ZPSTRESU"] == "10^6 cells"
        assert results["REMFG"]["ZPORRES"] == "N"
        assert {r["ZPDTC"] for r in results.values()} == {record["ZPDTC"]}
        assert record["EPOCH"] == "CELL COLLECTION"
    pending = [r for r in zp if r["ZPORRES"] == "PENDING"]
    assert all(r["ZPDTC"] is None for r in pending)


def test_study_check_reports_a_broken_relrec_declaration(zm001: Study, tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    shutil.copytree(REPO / "exports", exports)
    mapping = exports / "CE.yaml"
    text = mapping.read_text(encoding="utf-8")
    text = text.replace("ICANS: ICANSAEID}", "ICANS: ICANSAE, DD: DTHAEID}")
    mapping.write_text(text.replace("matches: AESPID", "matches: AENUM"), encoding="utf-8")
    problems = [(p.file, p.where, p.message) for p in sdtm_problems(exports, zm001)]
    assert sorted(problems) == sorted([
        ("exports/CE.yaml", "relrec[0].item.ICANS", "form F.ICANS has no item ICANSAE"),
        ("exports/CE.yaml", "relrec[0].item.DD", "DD is not a source form of CE"),
        ("exports/CE.yaml", "relrec[0]", "AENUM is not a variable of AE"),
    ])  # fmt: skip

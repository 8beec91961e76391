"""SDTM SE and SV of the demo study, and EPOCH in every domain, as a reviewer checks them: SV
lists every dated visit (visits without forms included, an unscheduled visit and its repeat
numbered), SE's elements start at consent, at the first visits of their periods, at the
infusion and the day after it, and end when the next starts; the EPOCH of every dated AE, VS,
LB, EX, DS and SV record is the epoch of the SE element holding its date (so AEs of D1-D7 and
the D7 visit are FOLLOW-UP). SE and SV are written in the three formats and described in a
schema-valid Define-XML. One demo subject gets two unscheduled visits through the services."""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import pyreadstat
import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.exporters.define import write_define
from app.models import FormData, ItemData, ItemGroupData, StudyEventData, Subject
from app.schemas import define_schema
from app.sdtm.build import write_sdtm
from app.sdtm.dataset import SdtmDataset
from app.sdtm.derive import Value
from app.sdtm.rules import check_dataset, read_written
from app.sdtm.spec import RecordSource, SdtmSpecs, load_sdtm_specs
from app.study.loader import LOG_EVENT_OID, Study, load_study
from app.study.problems import StudyDefinitionError
from tests import factories
from tests.conftest import REPO

SUBJECT = "02-001"
"""The demo subject (site 02, DL1, in follow-up for a year) given two unscheduled visits."""
USUBJID = f"ZM001-{SUBJECT}"
Record = dict[str, Value]
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}


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


def _infusion(engine: Engine) -> str:
    with Session(engine) as session:
        subject = session.exec(select(Subject).where(Subject.subject_key == SUBJECT)).one()
        return _item(session, subject, "IT.EX.EXSTDTM")


@pytest.fixture(scope="module")
def demo(module_database_url: str, zm001: Study) -> Iterator[Engine]:
    """The demo, and for SUBJECT an unscheduled visit with vital signs on D40 and a second
    one, with no forms, on D41."""
    engine = make_engine(module_database_url)
    load_demo(engine, zm001, subjects=len(SCENARIOS))
    d0 = date.fromisoformat(_infusion(engine)[:10])
    with Session(engine) as session:
        subject = session.exec(select(Subject).where(Subject.subject_key == SUBJECT)).one()
        for repeat, day in ((1, d0 + timedelta(days=40)), (2, d0 + timedelta(days=41))):
            factories.date_visit(
                session, zm001, subject, "SE.UNS", day, repeat=repeat, by="investigator2"
            )
        measured = {"VSTPT": "SINGLE", "VSDTC": f"{d0 + timedelta(days=40)}T09:30",
                    "VSPOS": "SITTING", "TEMP": "36.8", "SYSBP": "118", "DIABP": "76",
                    "HR": "72", "RESP": "16", "OXYSAT": "98", "O2SUPYN": "N"}  # fmt: skip
        outcome = factories.save(
            session, zm001, subject, "F.VS", {"IG.VS.VSMEAS": {1: measured}},
            event="SE.UNS", complete=True, by="investigator2",
        )  # fmt: skip
        assert outcome.saved, outcome.evaluation.errors
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def specs(zm001: Study) -> SdtmSpecs:
    return load_sdtm_specs(REPO / "exports", zm001)


@pytest.fixture(scope="module")
def datasets(
    demo: Engine, zm001: Study, specs: SdtmSpecs, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SdtmDataset]:
    out_dir = tmp_path_factory.mktemp("sdtm")
    with Session(demo) as session:
        return {d.name: d for d in write_sdtm(session, zm001, specs, out_dir)}


def records(dataset: SdtmDataset) -> list[Record]:
    columns, rows = read_written(dataset)
    return [dict(zip(columns, row, strict=True)) for row in rows]


@pytest.fixture(scope="module")
def tables(datasets: dict[str, SdtmDataset]) -> dict[str, list[Record]]:
    return {name: records(dataset) for name, dataset in datasets.items()}


def by_subject(rows: list[Record]) -> dict[str, list[Record]]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for row in rows:
        grouped[str(row["USUBJID"])].append(row)
    return grouped


def element_holding(elements: list[Record], moment: str) -> Record | None:
    """The SE record whose [SESTDTC, next SESTDTC) holds `moment`, compared at the precision
    both have (SDTMIG: no gaps, each element lasts until the next begins)."""
    holding = None
    for element in sorted(elements, key=lambda row: float(str(row["SESEQ"]))):
        start = str(element["SESTDTC"])
        common = min(len(start), len(moment))
        if start[:common] <= moment[:common]:
            holding = element
    return holding


# -- SV -------------------------------------------------------------------------------------------


def test_sv_has_one_record_per_dated_visit_with_the_visit_date(
    demo: Engine, tables: dict[str, list[Record]], zm001: Study
) -> None:
    with Session(demo) as session:
        dated = session.exec(
            select(Subject.subject_key, StudyEventData.event_oid, StudyEventData.visit_date)
            .join(Subject, col(Subject.id) == col(StudyEventData.subject_id))
            .where(col(StudyEventData.visit_date).is_not(None))
            .where(StudyEventData.event_oid != LOG_EVENT_OID)
        ).all()
    sv = tables["SV"]
    expected = sorted((f"ZM001-{key}", str(day)) for key, _event, day in dated)
    assert sorted((str(r["USUBJID"]), str(r["SVSTDTC"])) for r in sv) == expected
    assert all(r["SVENDTC"] == r["SVSTDTC"] and r["SVENDY"] == r["SVSTDY"] for r in sv)
    visits = {r["VISITNUM"]: r for r in by_subject(sv)[USUBJID]}
    d0 = date.fromisoformat(_infusion(demo)[:10])
    # the D1 and D4 visits have no forms in the demo but took place
    assert visits[7]["VISIT"] == "Day 1" and visits[7]["SVSTDTC"] == str(d0 + timedelta(days=1))
    assert visits[7]["VISITDY"] == 2 and visits[9]["VISITDY"] == 8  # D7 is study day 8
    assert visits[6]["VISITDY"] == 1 and visits[1]["VISITDY"] is None  # screening: from L0
    first, second = visits[99.01], visits[99.02]
    assert (first["VISIT"], first["SVSTDTC"], first["SVSTDY"]) == (
        "Unscheduled 1", str(d0 + timedelta(days=40)), 41,
    )  # fmt: skip
    assert (second["VISIT"], second["SVSTDTC"]) == ("Unscheduled 2", str(d0 + timedelta(days=41)))
    assert first["SVUPDES"] == "Unscheduled: Vital Signs" and second["SVUPDES"] == "Unscheduled"
    assert all(r["SVUPDES"] is None for num, r in visits.items() if num not in (99.01, 99.02))
    # VISITNUM and VISIT agree with the records of the visit's forms
    unscheduled_vs = [r for r in tables["VS"] if r["USUBJID"] == USUBJID and r["VISITNUM"] == 99.01]
    assert unscheduled_vs and {r["VISIT"] for r in unscheduled_vs} == {"Unscheduled 1"}


def test_a_visit_without_a_date_is_not_in_sv(tables: dict[str, list[Record]]) -> None:
    sv, dm = by_subject(tables["SV"]), {r["USUBJID"]: r for r in tables["DM"]}
    never_infused = [usubjid for usubjid, row in dm.items() if row["RFSTDTC"] is None]
    assert never_infused
    for usubjid in never_infused:
        assert all(float(str(r["VISITNUM"])) < 6 or r["VISITNUM"] == 90 for r in sv[usubjid])


# -- SE -------------------------------------------------------------------------------------------


def test_se_elements_start_at_consent_the_visits_and_the_infusion(
    tables: dict[str, list[Record]], zm001: Study
) -> None:
    sv, dm = by_subject(tables["SV"]), {r["USUBJID"]: r for r in tables["DM"]}
    ds = by_subject(tables["DS"])
    codes = [p.element.code for p in zm001.schedule.periods if p.element]
    for usubjid, elements in by_subject(tables["SE"]).items():
        elements.sort(key=lambda row: float(str(row["SESEQ"])))
        starts = {str(r["ETCD"]): str(r["SESTDTC"]) for r in elements}
        assert [r["ETCD"] for r in elements] == codes[: len(elements)], usubjid
        assert [r["TAETORD"] for r in elements] == list(range(1, len(elements) + 1))
        visits = {float(str(r["VISITNUM"])): str(r["SVSTDTC"]) for r in sv[usubjid]}
        assert starts["SCRN"] == str(dm[usubjid]["RFICDTC"])[:10]
        if "COLL" in starts:
            assert starts["COLL"] == min(visits[n] for n in (2, 3) if n in visits)
        if "LD" in starts:
            assert starts["LD"] == min(visits[n] for n in (4, 5) if n in visits)
        if "INF" in starts:
            infusion = str(dm[usubjid]["RFSTDTC"])
            assert starts["INF"] == infusion and len(infusion) == 19  # with its time
        if "FU" in starts:
            day_after = date.fromisoformat(starts["INF"][:10]) + timedelta(days=1)
            assert starts["FU"] == str(day_after) == visits.get(7, str(day_after))
        for current, following in pairwise(elements):
            assert current["SEENDTC"] == following["SESTDTC"]
        end_of_study = [r["DSSTDTC"] for r in ds[usubjid] if r["DSCAT"] == "DISPOSITION EVENT"]
        death = dm[usubjid]["DTHDTC"]
        ends = [str(value) for value in (*end_of_study, death) if value is not None]
        assert elements[-1]["SEENDTC"] == (max(ends) if ends else None), usubjid


def test_se_and_sv_pass_the_sdtm_rule_checks(
    datasets: dict[str, SdtmDataset], specs: SdtmSpecs, zm001: Study
) -> None:
    for name in ("SE", "SV"):
        assert datasets[name].rows, name
        assert check_dataset(datasets[name], specs, zm001) == [], name


# -- EPOCH ------------------------------------------------------------------------------------------

DATES = {"AE": "AESTDTC", "VS": "VSDTC", "LB": "LBDTC", "EX": "EXSTDTC", "DS": "DSSTDTC",
         "SV": "SVSTDTC"}  # fmt: skip


def test_epoch_of_every_dated_record_is_the_epoch_of_its_se_element(
    tables: dict[str, list[Record]],
) -> None:
    elements = by_subject(tables["SE"])
    checked: dict[str, int] = defaultdict(int)
    for domain, variable in DATES.items():
        for record in tables[domain]:
            moment = record[variable]
            if not isinstance(moment, str) or len(moment) < 10:
                continue
            element = element_holding(elements[str(record["USUBJID"])], moment)
            expected = None if element is None else element["EPOCH"]
            assert record["EPOCH"] == expected, (domain, record["USUBJID"], moment)
            checked[domain] += 1
    assert all(checked[domain] > 0 for domain in DATES), checked


def test_aes_of_the_first_week_and_the_day_7_visit_are_follow_up(
    tables: dict[str, list[Record]],
) -> None:
    first_week = [r for r in tables["AE"] if r["AESTDY"] is not None and 2 <= r["AESTDY"] <= 8]
    assert first_week and {r["EPOCH"] for r in first_week} == {"FOLLOW-UP"}
    day_7 = [r for name in ("VS", "LB", "SV") for r in tables[name] if r["VISITNUM"] == 9]
    assert day_7 and {r["EPOCH"] for r in day_7} == {"FOLLOW-UP"}
    assert {r["EPOCH"] for r in tables["SV"]} == {
        "SCREENING", "CELL COLLECTION", "LYMPHODEPLETION", "TREATMENT", "FOLLOW-UP",
    }  # fmt: skip
    infusions = [r for r in tables["EX"] if r["VISITNUM"] == 6]
    assert infusions and {r["EPOCH"] for r in infusions} == {"TREATMENT"}
    # vital signs before the infusion on D0 are still in lymphodepletion, after it treatment
    d0_vs = defaultdict(set)
    for record in tables["VS"]:
        if record["VISITNUM"] == 6:
            d0_vs[record["VSTPT"]].add(record["EPOCH"])
    assert d0_vs["PRE-DOSE"] == {"LYMPHODEPLETION"} and d0_vs["POST-INFUSION"] == {"TREATMENT"}


def test_follow_up_starts_the_day_after_the_infusion_even_before_the_d1_visit(
    tables: dict[str, list[Record]],
) -> None:
    sv, se, ae = by_subject(tables["SV"]), by_subject(tables["SE"]), by_subject(tables["AE"])
    waiting = [
        usubjid
        for usubjid, elements in se.items()
        if "INF" in {r["ETCD"] for r in elements} and 7 not in {r["VISITNUM"] for r in sv[usubjid]}
    ]
    with_events = [usubjid for usubjid in waiting if any(r["AESTDY"] == 2 for r in ae[usubjid])]
    assert with_events, "the demo subject infused yesterday has AEs today, before its D1 visit"
    for usubjid in with_events:
        infusion, follow_up = (
            next(r for r in se[usubjid] if r["ETCD"] == code) for code in ("INF", "FU")
        )
        day_after = date.fromisoformat(str(infusion["SESTDTC"])[:10]) + timedelta(days=1)
        assert follow_up["SESTDTC"] == infusion["SEENDTC"] == str(day_after)
        assert {r["EPOCH"] for r in ae[usubjid] if r["AESTDY"] == 2} == {"FOLLOW-UP"}


# -- files and Define-XML -----------------------------------------------------------------------


def test_se_and_sv_are_written_in_every_format_and_described_in_define_xml(
    datasets: dict[str, SdtmDataset], tables: dict[str, list[Record]], zm001: Study,
    specs: SdtmSpecs, tmp_path: Path,
) -> None:  # fmt: skip
    for name in ("SE", "SV"):
        dataset = datasets[name]
        assert {path.name for path in dataset.files.values()} == {
            f"{name.lower()}.{suffix}" for suffix in ("xpt", "json", "csv")
        }
        frame, meta = pyreadstat.read_xport(str(dataset.files["xpt"]))
        assert len(frame) == len(tables[name]) and meta.table_name == name
        header = dataset.files["csv"].read_text(encoding="utf-8").splitlines()[0]
        spec = specs.domain(name)
        assert spec is not None and header.split(",") == [var.name for var in spec.variables]
    out_dir = next(iter(datasets["SE"].files.values())).parent
    write_define(zm001, specs, list(datasets.values()), out_dir)
    tree = etree.parse(str(out_dir / "define.xml"))
    assert define_schema().validate(tree), define_schema().error_log
    for name, keys in (("SE", ["STUDYID", "USUBJID", "SESTDTC", "ETCD"]),
                       ("SV", ["STUDYID", "USUBJID", "VISITNUM"])):  # fmt: skip
        spec = specs.domain(name)
        (group,) = tree.xpath(f"//odm:ItemGroupDef[@Name='{name}']", namespaces=NS)
        assert spec is not None and group.get(f"{{{NS['def']}}}Structure") == spec.structure
        refs = group.xpath("odm:ItemRef[@KeySequence]", namespaces=NS)
        ordered = sorted(refs, key=lambda ref: int(ref.get("KeySequence")))
        assert [ref.get("ItemOID").rsplit(".", 1)[1] for ref in ordered] == keys


def test_a_record_source_is_of_exactly_one_kind() -> None:
    assert RecordSource(subject_visits=True).subject_visits
    for kinds in ({"subject_elements": True, "form": "F.AE"},
                  {"subject": True, "subject_visits": True}, {}):  # fmt: skip
        with pytest.raises(ValueError, match="one of"):
            RecordSource.model_validate(kinds)
    with pytest.raises(ValueError, match="only a `form` source"):
        RecordSource.model_validate({"subject_elements": True, "where": {"X": "Y"}})


def test_study_check_reports_an_element_started_by_an_unknown_anchor(tmp_path: Path) -> None:
    forms = tmp_path / "forms"
    shutil.copytree(REPO / "forms", forms)
    schedule = forms / "schedule.yaml"
    text = schedule.read_text().replace("start_anchor: consent}", "start_anchor: consnet}")
    schedule.write_text(text)
    with pytest.raises(StudyDefinitionError) as raised:
        load_study(forms)
    line = next(n for n, line in enumerate(text.splitlines(), start=1) if "consnet" in line)
    assert [str(problem) for problem in raised.value.problems] == [
        f"forms/schedule.yaml:{line}: periods[0].element.start_anchor: unknown anchor consnet"
    ]

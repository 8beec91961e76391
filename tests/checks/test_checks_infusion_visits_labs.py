"""Edit checks of spec §7.2 (infusion: EC019, EC025-EC029) and §7.3 (vital signs, labs,
SLEDAI-2K, PGA: EC035-EC038, EC041-EC044), each failing and passing on data entered through
the write path (both databases)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.crf import write
from app.models import Query, QueryState, Subject
from app.study.loader import Study
from app.study.model import ItemGroupDef
from tests import factories

D0 = "2026-03-10T09:30"
"""The infusion start of the helpers' subject (D0 = 2026-03-10)."""


def at(start: str, minutes: float) -> str:
    """The datetime `minutes` after `start`, as the site types it."""
    return (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()[:16]


def ex(start: str = D0, **changes: str) -> dict[str, dict[int, dict[str, str]]]:
    """A complete, consistent infusion: DL1 (target 25 x10^6), thawed 30 min before the
    start, 15 min long."""
    row = {
        "PRECHK": "Y", "DOSELVL": "DL1", "EXDOSE": "25", "EXLOT": "LOT-001", "EXBAGN": "1",
        "EXVOL": "50", "THAWDTM": at(start, -30), "EXSTDTM": start, "EXENDTM": at(start, 15),
        "EXCOMP": "Y", "EXINTYN": "N", "PREMEDYN": "Y", "IRRYN": "N",
    }  # fmt: skip
    return {"IG.EX": {1: row | changes}}


def save_ex(
    session: Session, zm001: Study, subject: Subject, start: str = D0, **changes: str
) -> write.Outcome:
    return factories.save(session, zm001, subject, "F.EX", ex(start, **changes), event="SE.D0")


def save_ld(session: Session, zm001: Study, subject: Subject, last_end: str) -> None:
    """Lymphodepletion with fludarabine doses on three days, the last one ending `last_end`."""
    rows = {}
    for index, days_before in enumerate((2, 1, 0), start=1):
        end = at(last_end, -days_before * 1440)
        rows[index] = {
            "LDDRUG": "FLUDARABINE", "LDDAY": f"D-{3 + days_before}", "LDPLDOS": "25",
            "LDADOS": "42.5", "LDSTDTM": at(end, -30), "LDENDTM": end,
            "LDROUTE": "INTRAVENOUS", "LDMODYN": "N",
        }  # fmt: skip
    header = {
        "LDHT": "170",
        "LDWT": "60",
        "LDWTDAT": last_end[:10],
        "LDBSA": "1.68",
        "LDCRCL": "95",
    }
    outcome = factories.save(
        session, zm001, subject, "F.LD", {"IG.LD": {1: header}, "IG.LD.ADM": rows}, event="SE.LD"
    )
    assert outcome.saved, outcome.evaluation.errors


def vs_row(when: str, temp: str = "36.8", sysbp: str = "120") -> dict[str, str]:
    return {
        "VSTPT": "SINGLE", "VSDTC": when, "TEMP": temp, "SYSBP": sysbp, "DIABP": "75",
        "HR": "80", "RESP": "16", "OXYSAT": "98", "O2SUPYN": "N",
    }  # fmt: skip


def save_vs(
    session: Session, zm001: Study, subject: Subject, event: str, *rows: dict[str, str]
) -> write.Outcome:
    measurements = {"IG.VS.VSMEAS": dict(enumerate(rows, start=1))}
    return factories.save(session, zm001, subject, "F.VS", measurements, event=event)


def save_crs(session: Session, zm001: Study, subject: Subject, onset: str) -> None:
    """A grade 1 CRS episode (fever alone) with one assessment at its onset."""
    assessment = {
        "ASMDTM": onset, "TMAX": "38.6", "FEVERYN": "Y", "ANTIPYR_ANTICYT": "N",
        "HYPOTYN": "N", "FLUIDYN": "N", "VASONUM": "0", "VASOPRESSIN": "N", "O2DEV": "NONE",
        "TOCINUM": "0", "STERYN": "N", "ICUYN": "N",
    }  # fmt: skip
    episode = {"CRSSTDTM": onset, "CRSGRINV": "1", "CRSDTHYN": "N", "CRSAEID": "AE001"}
    rows = {"IG.CRS": {1: episode}, "IG.CRS.ASM": {1: assessment}}
    assert factories.save(session, zm001, subject, "F.CRS", rows, event="SE.LOG").saved


def save_ae(session: Session, zm001: Study, subject: Subject, term: str, onset: str) -> None:
    ae = {"AESPID": "AE001", "AETERM": term, "AESTDAT": onset, "AEONGO": "Y"}
    assert factories.save(session, zm001, subject, "F.AE", {"IG.AE": {1: ae}}, event="SE.LOG").saved


def lab_rows(
    zm001: Study, form_oid: str, day: str, results: Mapping[str, tuple[str | None, ...]]
) -> dict[str, dict[int, dict[str, str | None]]]:
    """A lab form's values: the sample date and, per test code, (result, unit) or (result,
    unit, normal range low, high) on the test's preset row."""
    header, group = zm001.forms[form_oid].item_groups[0], results_group(zm001, form_oid)
    rows: dict[int, dict[str, str | None]] = {}
    for test, values in results.items():
        names = ("LBORRES", "LBORRESU", "LBORNRLO", "LBORNRHI")
        rows[row_of(zm001, form_oid, test)] = dict(zip(names, values, strict=False))
    return {header.oid: {1: {"LBDAT": day}}, group.oid: rows}


def results_group(zm001: Study, form_oid: str) -> ItemGroupDef:
    return next(g for g in zm001.forms[form_oid].item_groups if g.repeating)


def row_of(zm001: Study, form_oid: str, test: str) -> int:
    """The preset row of a lab test."""
    rows = results_group(zm001, form_oid).rows
    return next(i for i, row in enumerate(rows, start=1) if row["LBTESTCD"] == test)


def save_lab(
    session: Session,
    zm001: Study,
    subject: Subject,
    form_oid: str,
    event: str,
    day: str,
    results: Mapping[str, tuple[str | None, ...]],
    **extra: str,
) -> write.Outcome:
    rows = lab_rows(zm001, form_oid, day, results)
    header_oid = zm001.forms[form_oid].item_groups[0].oid
    rows[header_oid][1].update(extra)
    return factories.save(session, zm001, subject, form_oid, rows, event=event)


def open_checks(session: Session) -> set[str]:
    """The checks with an open system query."""
    states = session.exec(select(Query.check_id, Query.state)).all()
    return {check for check, state in states if state == QueryState.OPEN and check}


def error(outcome: write.Outcome, group: str, item: str, row: int = 1) -> str:
    assert not outcome.saved
    return outcome.evaluation.errors[(group, row, item)]


@pytest.fixture
def session(demo_engine: Engine) -> Iterator[Session]:
    with Session(demo_engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def subject(session: Session, zm001: Study) -> Subject:
    return factories.register(session, zm001)


# §7.2 infusion


def test_ec019_the_infusion_starts_after_the_last_lymphodepletion_dose(
    session: Session, zm001: Study, subject: Subject
) -> None:
    save_ld(session, zm001, subject, last_end="2026-03-07T11:00")
    refused = save_ex(session, zm001, subject, start="2026-03-07T10:30")
    assert error(refused, "IG.EX", "EXSTDTM").startswith("The infusion start is not after")
    assert save_ex(session, zm001, subject).saved  # D0 = 3 days after the last dose
    assert "EC019.INTERVAL" not in open_checks(session)


@pytest.mark.parametrize(("start", "queried"), [("2026-03-08T12:00", True), ("2026-03-09T09:30", False), ("2026-03-21T09:30", False), ("2026-03-22T09:30", True)])  # fmt: skip
def test_ec019_the_infusion_is_2_to_14_days_after_lymphodepletion(
    session: Session, zm001: Study, subject: Subject, start: str, queried: bool
) -> None:
    save_ld(session, zm001, subject, last_end="2026-03-07T11:00")
    assert save_ex(session, zm001, subject, start=start).saved
    assert ("EC019.INTERVAL" in open_checks(session)) is queried


@pytest.mark.parametrize(("dose", "queried"), [("19.9", True), ("20", False), ("30", False), ("30.1", True)])  # fmt: skip
def test_ec025_the_dose_infused_is_within_20_percent_of_target(
    session: Session, zm001: Study, subject: Subject, dose: str, queried: bool
) -> None:
    assert save_ex(session, zm001, subject, EXDOSE=dose).saved
    assert ("EC025" in open_checks(session)) is queried


def test_ec026_the_lot_infused_is_the_lot_released(
    session: Session, zm001: Study, subject: Subject
) -> None:
    product = {
        "MFGRES": "RELEASED", "LOTNUM": "LOT-001", "RELDAT": "2026-03-01", "PRODCAR": "30",
        "PRODVIAB": "90", "PRODCARP": "40", "REMFGYN": "N",
    }  # fmt: skip
    rows = {"IG.PROD": {1: product}}
    assert factories.save(session, zm001, subject, "F.PROD", rows, event="SE.APH").saved
    refused = save_ex(session, zm001, subject, EXLOT="LOT-002")
    assert error(refused, "IG.EX", "EXLOT").startswith("The product lot does not match")
    assert save_ex(session, zm001, subject, EXLOT="LOT-001").saved


@pytest.mark.parametrize(("minutes", "queried"), [(-91, True), (-90, False), (0, False), (5, True)])
def test_ec027_the_infusion_starts_within_90_minutes_of_thawing(
    session: Session, zm001: Study, subject: Subject, minutes: int, queried: bool
) -> None:
    assert save_ex(session, zm001, subject, THAWDTM=at(D0, minutes)).saved
    assert ("EC027" in open_checks(session)) is queried


def test_ec028_the_infusion_ends_after_it_starts(
    session: Session, zm001: Study, subject: Subject
) -> None:
    refused = save_ex(session, zm001, subject, EXENDTM=at(D0, -1))
    assert (
        error(refused, "IG.EX", "EXENDTM")
        == "The infusion end is before its start. Check both times."
    )
    assert save_ex(session, zm001, subject, EXENDTM=D0).saved


def test_ec028_an_incomplete_infusion_has_a_reason_and_a_volume_not_infused(
    session: Session, zm001: Study, subject: Subject
) -> None:
    refused = save_ex(session, zm001, subject, EXCOMP="N")
    assert error(refused, "IG.EX", "EXVOLNI").startswith("The infusion was not completed")
    refused = save_ex(session, zm001, subject, EXCOMP="N", EXNCRSN="Bag leak", EXVOLNI="0")
    assert error(refused, "IG.EX", "EXVOLNI").startswith("The infusion was not completed")
    assert save_ex(session, zm001, subject, EXCOMP="N", EXNCRSN="Bag leak", EXVOLNI="5").saved


def test_ec029_the_pre_infusion_safety_check_was_passed(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject, PRECHK="N").saved
    assert open_checks(session) == {"EC029"}
    assert save_ex(session, zm001, subject, PRECHK="Y").saved
    assert open_checks(session) == set()


def test_ec029_no_fever_in_the_24_hours_before_the_infusion(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject).saved
    # 38.5 °C 25 h before the start (at the LD visit) and 37.2 °C before the dose: no query
    assert save_vs(session, zm001, subject, "SE.LD", vs_row(at(D0, -25 * 60), "38.5")).saved
    assert save_vs(session, zm001, subject, "SE.D0", vs_row(at(D0, -60), "37.2")).saved
    assert "EC029.FEVER" not in open_checks(session)
    assert save_vs(session, zm001, subject, "SE.D0", vs_row(at(D0, -60), "38.0")).saved
    assert "EC029.FEVER" in open_checks(session)
    query = session.exec(select(Query).where(Query.check_id == "EC029.FEVER")).one()
    assert (query.item_oid, query.require_response) == ("IT.EX.EXSTDTM", True)


# §7.3 vital signs


def test_ec035_fever_after_the_infusion_needs_a_crs_assessment(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject).saved
    fever = at(D0, 20 * 60)
    assert save_vs(session, zm001, subject, "SE.D1", vs_row(fever, "38.4")).saved
    assert open_checks(session) == {"EC035"}
    save_crs(session, zm001, subject, at(fever, 23 * 60))  # within 24 h
    assert open_checks(session) == set()


def test_ec035_fever_after_the_infusion_or_an_adverse_event_of_fever(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject).saved
    assert save_vs(session, zm001, subject, "SE.D1", vs_row("2026-03-11T08:00", "38.4")).saved
    save_crs(session, zm001, subject, "2026-03-12T09:00")  # 25 h later: not this fever
    assert open_checks(session) == {"EC035"}
    save_ae(session, zm001, subject, "Pyrexia (urinary infection)", "2026-03-12")
    assert open_checks(session) == set()


def test_ec035_fever_before_the_infusion_day_is_not_queried(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject).saved
    assert save_vs(session, zm001, subject, "SE.LD", vs_row("2026-03-09T08:00", "38.4")).saved
    assert open_checks(session) == set()


def test_ec035_a_weight_change_above_10_percent_from_baseline_is_queried(
    session: Session, zm001: Study, subject: Subject
) -> None:
    def weigh(event: str, day: str, weight: str) -> None:
        rows = {"IG.HTWT": {1: {"VSDAT": day, "HEIGHT": "170", "WEIGHT": weight}}}
        assert factories.save(session, zm001, subject, "F.HTWT", rows, event=event).saved

    weigh("SE.BL", "2026-03-03", "60")
    weigh("SE.D28", "2026-04-07", "66")
    assert open_checks(session) == set()
    weigh("SE.D28", "2026-04-07", "66.1")
    assert open_checks(session) == {"EC035.WEIGHT"}
    weigh("SE.M3", "2026-06-08", "53.9")
    queries = session.exec(select(Query.event_oid).where(Query.state == QueryState.OPEN)).all()
    assert sorted(queries) == ["SE.D28", "SE.M3"]


def test_ec036_hypotension_with_fever_after_the_infusion_needs_a_crs_episode(
    session: Session, zm001: Study, subject: Subject
) -> None:
    assert save_ex(session, zm001, subject).saved
    low = vs_row("2026-03-11T08:00", "37.0", "85")
    assert save_vs(session, zm001, subject, "SE.D1", low).saved
    assert open_checks(session) == set()  # no fever
    fever = vs_row("2026-03-11T20:00", "38.3")
    assert save_vs(session, zm001, subject, "SE.D1", low, fever).saved
    assert open_checks(session) == {"EC035", "EC036"}
    save_crs(session, zm001, subject, "2026-03-11T21:00")
    assert open_checks(session) == set()


# §7.3 labs

UNITS = [
    ("F.LBHEM", "SE.SCR", "PLAT", "10^9/L", "g/L"),
    ("F.LBCHEM", "SE.SCR", "ALT", "U/L", "mmol/L"),
    ("F.LBCOAG", "SE.SCR", "PT", "s", "ratio"),
    ("F.LBURIN", "SE.SCR", "RBC", "/HPF", "g/g"),
    ("F.LBU24", "SE.SCR", "PROT", "g/24 h", "mL"),
    ("F.LBIMM", "SE.SCR", "C3", "g/L", "IU/mL"),
    ("F.LBAPL", "SE.SCR", "ACLIGG", "GPL U/mL", "MPL U/mL"),
    ("F.LBIG", "SE.SCR", "IGG", "g/L", None),
    ("F.LBLYMS", "SE.SCR", "CD3", "cells/uL", "%"),
    ("F.LBCART", "SE.D0", "CARTCELL", "cells/uL", "%"),
    ("F.LBINFL", "SE.SCR", "CRP", "mg/L", "ug/L"),
    ("F.LBCYTO", "SE.BL", "IL6", "pg/mL", "U/mL"),
    ("F.LBINF", "SE.SCR", "HBVDNA", "IU/mL", "copies/mL"),
    ("F.LBVIR", "SE.D28", "HBVDNA", "IU/mL", "copies/mL"),
]
"""Per lab form: a visit it is at, a test, a unit allowed for it and one of the form's units
that is not (none when the form has one unit)."""


@pytest.mark.parametrize(("form", "event", "test", "unit", "wrong"), UNITS)
def test_ec037_a_lab_result_has_a_unit_allowed_for_its_test(
    session: Session,
    zm001: Study,
    subject: Subject,
    form: str,
    event: str,
    test: str,
    unit: str,
    wrong: str | None,
) -> None:
    group, row = results_group(zm001, form).oid, row_of(zm001, form, test)
    day = {"SE.SCR": "2026-02-01", "SE.BL": "2026-03-03", "SE.D0": "2026-03-10"}.get(
        event, "2026-04-07"
    )
    refused = save_lab(session, zm001, subject, form, event, day, {test: ("5", None)})
    assert error(refused, group, "LBORRESU", row).startswith("The result has no unit")
    if wrong is not None:
        refused = save_lab(session, zm001, subject, form, event, day, {test: ("5", wrong)})
        assert error(refused, group, "LBORRESU", row).startswith("The result has no unit")
    assert save_lab(session, zm001, subject, form, event, day, {test: ("5", unit)}).saved


RANGED = [f for f, *_ in UNITS if f not in ("F.LBCART", "F.LBINF", "F.LBVIR")]


@pytest.mark.parametrize("form", RANGED)
def test_ec037_a_normal_range_runs_from_low_to_high(
    session: Session, zm001: Study, subject: Subject, form: str
) -> None:
    _, event, test, unit, _ = next(u for u in UNITS if u[0] == form)
    group, row = results_group(zm001, form).oid, row_of(zm001, form, test)
    day = "2026-03-03" if event == "SE.BL" else "2026-02-01"
    refused = save_lab(session, zm001, subject, form, event, day, {test: ("5", unit, "10", "2")})
    assert error(refused, group, "LBORNRLO", row).startswith("The normal range lower limit")
    assert save_lab(session, zm001, subject, form, event, day, {test: ("5", unit, "2", "10")}).saved


HAEM_OK = {
    "WBC": ("6.0", "10^9/L"), "NEUT": ("3.5", "10^9/L"), "LYM": ("1.8", "10^9/L"),
    "MONO": ("0.4", "10^9/L"), "EOS": ("0.2", "10^9/L"), "BASO": ("0.05", "10^9/L"),
    "HGB": ("13.5", "g/dL"), "PLAT": ("250000", "/uL"),
}  # fmt: skip
SMALL = {"MONO": ("0.05", "10^9/L"), "EOS": ("0.05", "10^9/L"), "BASO": ("0", "10^9/L")}
"""A differential small enough for one count above the WBC to stay within WBC + 5%."""


@pytest.mark.parametrize(
    ("changes", "queried_rows"),
    [
        ({}, []),
        ({"PLAT": ("2001", "10^9/L")}, [9]),
        ({"PLAT": ("2001000", "/uL")}, [9]),
        ({"HGB": ("25.1", "g/dL")}, [7]),
        ({"HGB": ("251", "g/L")}, [7]),
        ({"NEUT": ("6.1", "10^9/L"), **SMALL, "LYM": ("0.05", "10^9/L")}, [2]),  # sum 6.25
        ({"LYM": ("6.1", "10^9/L"), **SMALL, "NEUT": ("0.05", "10^9/L")}, [3]),
        ({"WBC": ("5.6", "10^9/L")}, [1]),  # differential 5.95 > 5.6 x 1.05
        ({"WBC": ("5.7", "10^9/L")}, []),  # 5.95 <= 5.985
    ],
)
def test_ec038_haematology_results_are_within_physiologic_limits(
    session: Session,
    zm001: Study,
    subject: Subject,
    changes: dict[str, tuple[str, str]],
    queried_rows: list[int],
) -> None:
    results = HAEM_OK | changes
    assert save_lab(session, zm001, subject, "F.LBHEM", "SE.SCR", "2026-02-01", results).saved
    rows = session.exec(
        select(Query.group_repeat).where(Query.check_id == "EC038", Query.state == QueryState.OPEN)
    ).all()
    assert sorted(rows) == queried_rows


# §7.3 SLEDAI-2K, PGA


SLEDAI_ITEMS = [
    "SEIZURE", "PSYCHOSIS", "OBS", "VISUAL", "CRANIAL", "HEADACHE", "CVA", "VASCULIT",
    "ARTHRIT", "MYOSITIS", "CASTS", "HEMATUR", "PROTUR", "PYURIA", "RASH", "ALOPECIA",
    "MUCULC", "PLEURISY", "PERICARD", "LOWCOMP", "DNABIND", "FEVER", "THROMBO", "LEUKOPEN",
]  # fmt: skip
WEIGHTS = dict(zip(SLEDAI_ITEMS, [8] * 8 + [4] * 6 + [2] * 7 + [1] * 3, strict=True))


def sledai(day: str, total: int | None = None, **yes: str) -> dict[str, dict[int, dict[str, str]]]:
    """A SLEDAI-2K with the descriptors of `yes` answered as given, the others N, and the
    investigator's total (the right one unless given)."""
    answers = {item: yes.get(item, "N") for item in SLEDAI_ITEMS}
    right = sum(WEIGHTS[item] for item, answer in answers.items() if answer == "Y")
    total_text = str(right if total is None else total)
    return {"IG.SLEDAI": {1: {"SLEDAIDAT": day, **answers, "SLEDAITOTINV": total_text}}}


def save_sledai(
    session: Session, zm001: Study, subject: Subject, day: str, event: str = "SE.D14", **yes: str
) -> write.Outcome:
    return factories.save(session, zm001, subject, "F.SLEDAI", sledai(day, **yes), event=event)


LAB_CASES = [
    # (descriptor, lab form, visit, results meeting the threshold, results not meeting it)
    ("THROMBO", "F.LBHEM", {"PLAT": ("99000", "/uL")}, {"PLAT": ("100", "10^9/L")}),
    ("LEUKOPEN", "F.LBHEM", {"WBC": ("2.9", "10^9/L")}, {"WBC": ("3.0", "10^9/L")}),
    ("LOWCOMP", "F.LBIMM", {"C4": ("0.05", "g/L", "0.1", "0.4")}, {"C3": ("0.9", "g/L", "0.9", "1.8")}),
    ("DNABIND", "F.LBIMM", {"DSDNAAB": ("120", "IU/mL", None, "100")}, {"DSDNAAB": ("20", "IU/mL", None, "100")}),
    ("PROTUR", "F.LBU24", {"PROT": ("0.6", "g/24 h")}, {"PROT": ("0.5", "g/24 h")}),
    ("PROTUR", "F.LBURIN", {"PROTCRT": ("60", "mg/mmol")}, {"PROTCRT": ("0.4", "g/g")}),
    ("HEMATUR", "F.LBURIN", {"RBC": ("6", "/HPF")}, {"RBC": ("5", "/HPF")}),
    ("PYURIA", "F.LBURIN", {"WBC": ("8", "/HPF")}, {"WBC": ("5", "/HPF")}),
]  # fmt: skip
LAB_EVENT = {"F.LBHEM": "SE.D14", "F.LBIMM": "SE.D14", "F.LBURIN": "SE.D14", "F.LBU24": "SE.D28"}
"""A visit of each lab form: LBU24 is not at D14, so it is dated within 3 days at D28."""


@pytest.mark.parametrize(("item", "form", "meets", "normal"), LAB_CASES)
@pytest.mark.parametrize("answer", ["Y", "N"])
@pytest.mark.parametrize("lab_meets", [True, False])
def test_ec041_sledai_lab_descriptors_agree_with_the_labs_within_3_days(
    session: Session,
    zm001: Study,
    subject: Subject,
    item: str,
    form: str,
    meets: dict[str, tuple[str | None, ...]],
    normal: dict[str, tuple[str | None, ...]],
    answer: str,
    lab_meets: bool,
) -> None:
    results = meets if lab_meets else normal
    event = LAB_EVENT[form]
    assert save_lab(session, zm001, subject, form, event, "2026-03-27", results).saved
    assert save_sledai(session, zm001, subject, "2026-03-24", **{item: answer}).saved
    queried = (answer == "Y") != lab_meets
    assert open_checks(session) == ({f"EC041.{item}"} if queried else set())


def test_ec041_labs_more_than_3_days_away_are_not_compared(
    session: Session, zm001: Study, subject: Subject
) -> None:
    platelets = {"PLAT": ("50", "10^9/L")}
    assert save_lab(session, zm001, subject, "F.LBHEM", "SE.D14", "2026-03-28", platelets).saved
    assert save_sledai(session, zm001, subject, "2026-03-24").saved
    assert open_checks(session) == set()
    assert save_lab(session, zm001, subject, "F.LBHEM", "SE.D14", "2026-03-27", platelets).saved
    assert open_checks(session) == {"EC041.THROMBO"}


def test_ec042_the_investigators_total_is_the_derived_total(
    session: Session, zm001: Study, subject: Subject
) -> None:
    wrong = sledai("2026-03-24", total=9, ARTHRIT="Y", RASH="Y")
    refused = factories.save(session, zm001, subject, "F.SLEDAI", wrong, event="SE.D14")
    assert error(refused, "IG.SLEDAI", "SLEDAITOTINV").startswith("The total score differs")
    right = sledai("2026-03-24", ARTHRIT="Y", RASH="Y")
    assert factories.save(session, zm001, subject, "F.SLEDAI", right, event="SE.D14").saved


def test_ec043_the_pga_is_dated_as_the_sledai_of_its_visit(
    session: Session, zm001: Study, subject: Subject
) -> None:
    def pga(day: str) -> write.Outcome:
        rows = {"IG.PGA": {1: {"PGADAT": day, "PGA": "1.5", "PGAASSR": "INV01"}}}
        return factories.save(session, zm001, subject, "F.PGA", rows, event="SE.D14")

    assert save_sledai(session, zm001, subject, "2026-02-01", event="SE.SCR").saved
    assert pga("2026-03-25").saved  # no SLEDAI-2K at D14 yet: the screening one is not compared
    assert save_sledai(session, zm001, subject, "2026-03-24").saved
    assert open_checks(session) == {"EC043"}  # a hard check broken by another form: a query
    assert error(pga("2026-03-26"), "IG.PGA", "PGADAT").startswith("The assessment date differs")
    assert pga("2026-03-24").saved
    assert open_checks(session) == set()


@pytest.mark.parametrize(
    ("result", "queried"),
    [(("20", "g/g"), False), (("20.1", "mg/mg"), True), (("2262", "mg/mmol"), False), (("2263", "mg/mmol"), True)],
)  # fmt: skip
def test_ec044_a_upcr_above_20_g_per_g_is_queried(
    session: Session, zm001: Study, subject: Subject, result: tuple[str, str], queried: bool
) -> None:
    upcr = {"PROTCRT": result}
    assert save_lab(session, zm001, subject, "F.LBURIN", "SE.SCR", "2026-02-01", upcr).saved
    assert ("EC044" in open_checks(session)) is queried

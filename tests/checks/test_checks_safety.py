"""Edit checks of spec §7.4 (safety, CRS/ICANS, DLT, death, disposition, medications) on data
entered through the write path, on both databases: each check has a case that passes and a
case that fails. Hard checks refuse their form's save with the message next to their first
item; soft checks open a system query on it."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf.write import Outcome
from app.expressions import compile_expression
from app.models import Query, QueryState, Subject
from app.study.loader import Study
from tests import factories

D0 = "2026-03-01 10:00"
"""The infusion start of the tests (day 0)."""

AE_ROW: dict[str, Any] = {
    "AESPID": "AE001", "AETERM": "Headache", "AESTDAT": "2026-02-20", "AEONGO": "N",
    "AEENDAT": "2026-02-21", "AETOXGR": "1", "AESER": "N", "AEACN": "NOT APPLICABLE",
    "AEOUT": "RECOVERED/RESOLVED", "AESIYN": "N",
}  # fmt: skip
"""A mild, non-serious AE before the infusion."""

NOT_SERIOUS = dict.fromkeys(["AESDTH", "AESLIFE", "AESHOSP", "AESDISAB", "AESCONG", "AESMIE"], "N")

CRS_ROW: dict[str, Any] = {
    "ASMDTM": "2026-03-02 08:00", "TMAX": "38.6", "FEVERYN": "Y", "ANTIPYR_ANTICYT": "N",
    "HYPOTYN": "N", "FLUIDYN": "N", "VASONUM": "0", "VASOPRESSIN": "N", "O2DEV": "NONE",
    "TOCINUM": "0", "STERYN": "N", "ICUYN": "N",
}  # fmt: skip
"""A CRS assessment of grade 1 (fever alone)."""

ICANS_ROW: dict[str, Any] = {
    "ASMDTM": "2026-03-04 08:00", "ICEUNABLE": "N", "ICEORYR": "1", "ICEORMO": "1",
    "ICEORCTY": "1", "ICEORHSP": "1", "ICENAME": "3", "ICECMD": "1", "ICEWRITE": "0",
    "ICECOUNT": "0", "APHASIA": "N", "LOC": "ALERT", "SEIZURE": "NONE", "MOTOR": "NONE",
    "ICPEDEMA": "NONE", "OTHERCAUSE": "N",
}  # fmt: skip
"""An ICANS assessment of grade 1 (ICE score 8)."""

CM_ROW: dict[str, Any] = {
    "CMTRT": "Paracetamol", "CMINDC": "Headache", "CMCAT": "OTHER", "CMROUTE": "ORAL",
    "CMSTDAT": "2026-03-10", "CMONGO": "N", "CMENDAT": "2026-03-12",
}  # fmt: skip


@pytest.fixture
def session(demo_engine: Engine) -> Any:
    with Session(demo_engine, expire_on_commit=False) as session:
        yield session


def save_ae(session: Session, study: Study, subject: Subject, *rows: dict[str, Any]) -> Outcome:
    """Save the AE log with `rows` (each over AE_ROW), numbered 1, 2, ..."""
    group = {n: AE_ROW | row for n, row in enumerate(rows, start=1)}
    return factories.save(session, study, subject, "F.AE", {"IG.AE": group}, event="SE.LOG")


def infuse(session: Session, study: Study, subject: Subject, when: str = D0) -> Outcome:
    outcome = factories.save(
        session, study, subject, "F.EX", {"IG.EX": {1: {"EXSTDTM": when}}}, event="SE.D0"
    )
    assert outcome.saved
    return outcome


def save_crs(
    session: Session,
    study: Study,
    subject: Subject,
    *rows: dict[str, Any],
    repeat: int = 1,
    **episode: Any,
) -> Outcome:
    """A CRS episode linked to AE001 with assessment `rows` (each over CRS_ROW)."""
    values = {"CRSSTDTM": "2026-03-02 06:00", "CRSDTHYN": "N", "CRSAEID": "AE001"} | episode
    assessments = {n: CRS_ROW | row for n, row in enumerate(rows or ({},), start=1)}
    return factories.save(
        session, study, subject, "F.CRS", {"IG.CRS": {1: values}, "IG.CRS.ASM": assessments},
        event="SE.LOG", repeat=repeat,
    )  # fmt: skip


def save_icans(
    session: Session, study: Study, subject: Subject, *rows: dict[str, Any], **episode: Any
) -> Outcome:
    values = {
        "ICANSSTDTM": "2026-03-04 06:00", "ICANSGRINV": "1", "ICANSTRT": ["NONE"],
        "ICANSAEID": "AE002",
    } | episode  # fmt: skip
    assessments = {n: ICANS_ROW | row for n, row in enumerate(rows or ({},), start=1)}
    return factories.save(
        session, study, subject, "F.ICANS",
        {"IG.ICANS": {1: values}, "IG.ICANS.ASM": assessments}, event="SE.LOG",
    )  # fmt: skip


def save_cm(session: Session, study: Study, subject: Subject, *rows: dict[str, Any]) -> Outcome:
    group = {n: CM_ROW | row for n, row in enumerate(rows, start=1)}
    return factories.save(session, study, subject, "F.CM", {"IG.CM": group}, event="SE.LOG")


def save_dd(session: Session, study: Study, subject: Subject, death: str) -> Outcome:
    values = {"DTHDAT": death, "DTHTERM": "Sepsis", "DTHPRIM": "INFECTION", "DTHAEID": "AE001"}
    return factories.save(session, study, subject, "F.DD", {"IG.DD": {1: values}}, event="SE.LOG")


def save_ds(session: Session, study: Study, subject: Subject, **values: Any) -> Outcome:
    ds = {"DSSTAGE": "POST-INFUSION FOLLOW-UP", "DSDECOD": "WITHDRAWAL BY SUBJECT"} | values
    return factories.save(session, study, subject, "F.DS", {"IG.DS": {1: ds}}, event="SE.ET")


def queries(session: Session, check_id: str) -> list[Query]:
    """The system queries of `check_id` that are open."""
    found = session.exec(
        select(Query).where(Query.check_id == check_id).order_by(col(Query.id))
    ).all()
    for query in found:
        session.refresh(query)
    return [q for q in found if q.state == QueryState.OPEN]


def refused(outcome: Outcome, group: str, item: str, words: str) -> bool:
    message = outcome.evaluation.errors.get((group, 1, item), "")
    return not outcome.saved and words in message


def test_hours_between_is_null_unless_both_have_a_time() -> None:
    hours = compile_expression("hours_between(a, b)")
    assert hours.evaluate({"a": "2026-03-02T08:00:00", "b": "2026-03-05T09:30:00"}) == 73.5
    assert hours.evaluate({"a": "2026-03-02", "b": "2026-03-05T09:30:00"}) is None
    assert hours.evaluate({"a": None, "b": "2026-03-05T09:30:00"}) is None


# -- EC047 serious AE and seriousness criteria -------------------------------------------------


def test_ec047_a_serious_event_needs_a_seriousness_criterion(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    outcome = save_ae(session, zm001, subject, {"AESER": "Y"} | NOT_SERIOUS)
    assert refused(outcome, "IG.AE", "AESER", "no seriousness criterion is Yes")
    assert save_ae(session, zm001, subject, {"AESER": "Y"} | NOT_SERIOUS | {"AESHOSP": "Y"}).saved


# -- EC048 grade 5, fatal outcome, death criterion, Death form ---------------------------------

FATAL = {
    "AESTDAT": "2026-03-05", "AEENDAT": "2026-03-20", "AETOXGR": "5", "AEOUT": "FATAL",
    "AESER": "Y",
} | NOT_SERIOUS | {"AESDTH": "Y"}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [{"AEOUT": "RECOVERED/RESOLVED"}, {"AETOXGR": "4"}, {"AESDTH": "N", "AESLIFE": "Y"}],
    ids=["grade 5 not fatal", "fatal not grade 5", "fatal without death criterion"],
)
def test_ec048_grade_5_fatal_outcome_and_death_criterion_go_together(
    session: Session, zm001: Study, change: dict[str, str]
) -> None:
    subject = factories.register(session, zm001)
    assert save_dd(session, zm001, subject, "2026-03-20").saved
    outcome = save_ae(session, zm001, subject, FATAL | change)
    assert refused(outcome, "IG.AE", "AETOXGR", "go together")
    assert save_ae(session, zm001, subject, FATAL).saved


def test_ec048_2_the_date_of_death_is_the_end_date_of_the_grade_5_event(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert save_ae(session, zm001, subject, AE_ROW, FATAL | {"AESPID": "AE002"}).saved
    outcome = save_dd(session, zm001, subject, "2026-03-21")
    assert refused(outcome, "IG.DD", "DTHDAT", "end date of the grade 5 (fatal) adverse event")
    assert save_dd(session, zm001, subject, "2026-03-20").saved
    ongoing = FATAL | {"AESPID": "AE002", "AEONGO": "Y"}  # no end date: not before onset
    assert save_ae(session, zm001, subject, AE_ROW, ongoing).saved
    outcome = save_dd(session, zm001, subject, "2026-03-04")
    assert refused(outcome, "IG.DD", "DTHDAT", "end date of the grade 5 (fatal) adverse event")
    assert save_dd(session, zm001, subject, "2026-03-05").saved


def test_ec048_3_a_fatal_ae_needs_a_death_form_found_by_a_batch_run(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert save_ae(session, zm001, subject, AE_ROW, FATAL | {"AESPID": "AE002"}).saved
    assert queries(session, "EC048.3") == []  # batch-only: the save opens nothing
    assert "EC048.3" in factories.run_batch_checks(session, zm001, subject)
    [query] = queries(session, "EC048.3")
    assert (query.item_oid, query.group_repeat) == ("IT.AE.AEOUT", 2)  # the fatal event's row
    assert query.text.startswith("This adverse event is fatal")
    assert save_dd(session, zm001, subject, "2026-03-20").saved
    assert queries(session, "EC048.3") != []  # the Death form's save leaves it to the batch
    assert "EC048.3" not in factories.run_batch_checks(session, zm001, subject)
    assert queries(session, "EC048.3") == []  # resolved by the next batch run


# -- EC049 Death form, disposition and visits after death --------------------------------------


def test_ec049_after_a_death_the_disposition_is_death_on_the_date_of_death(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert save_dd(session, zm001, subject, "2026-03-20").saved
    outcome = save_ds(session, zm001, subject, DSSTDAT="2026-03-20", DSLCDAT="2026-03-20")
    assert refused(outcome, "IG.DS", "DSDECOD", "has a Death form")
    outcome = save_ds(session, zm001, subject, DSDECOD="DEATH", DSSTDAT="2026-03-22")
    assert refused(outcome, "IG.DS", "DSDECOD", "has a Death form")
    assert save_ds(session, zm001, subject, DSDECOD="DEATH", DSSTDAT="2026-03-20").saved


def test_ec049_2_no_visit_after_the_date_of_death(session: Session, zm001: Study) -> None:
    subject = factories.register(session, zm001)
    assert factories.date_visit(session, zm001, subject, "SE.D28", date(2026, 3, 29)).saved
    outcome = save_dd(session, zm001, subject, "2026-03-20")
    assert refused(outcome, "IG.DD", "DTHDAT", "visit is dated after the date of death")
    assert save_dd(session, zm001, subject, "2026-03-29").saved


# -- EC050 relationship to ZM001 and to lymphodepletion ----------------------------------------


@pytest.mark.parametrize(
    ("onset", "relationship", "consistent"),
    [
        ({"AESTDAT": "2026-03-05", "AESTTIM": "08:00"}, "NOT APPLICABLE", False),
        ({"AESTDAT": "2026-03-05", "AESTTIM": "08:00"}, "POSSIBLY RELATED", True),
        ({"AESTDAT": "2026-02-20"}, "RELATED", False),
        ({"AESTDAT": "2026-02-20"}, "NOT APPLICABLE", True),
        ({"AESTDAT": "2026-03-01", "AESTTIM": "08:00"}, "NOT APPLICABLE", True),
        ({"AESTDAT": "2026-03-01", "AESTTIM": "08:00"}, "UNLIKELY RELATED", False),
        ({"AESTDAT": "2026-03-01", "AESTTIM": "11:00"}, "NOT APPLICABLE", False),
        ({"AESTDAT": "2026-03-01", "AESTTIM": "11:00"}, "NOT RELATED", True),
    ],
)
def test_ec050_relationship_to_zm001_is_not_applicable_only_before_the_infusion(
    session: Session,
    zm001: Study,
    onset: dict[str, str],
    relationship: str,
    consistent: bool,
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    row = onset | {"AEENDAT": "2026-03-06", "AERELZM": relationship, "AEDLTYN": "N"}
    outcome = save_ae(session, zm001, subject, row)
    if consistent:
        assert outcome.saved
    else:
        assert refused(outcome, "IG.AE", "AERELZM", "Relationship to ZM001")


def test_ec050_2_relationship_to_lymphodepletion_after_the_first_dose(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    ld = {
        "IG.LD": {1: {"LDBSA": "1.70"}},
        "IG.LD.ADM": {1: {"LDDRUG": "FLUDARABINE", "LDSTDTM": "2026-02-24 09:00"}},
    }
    assert factories.save(session, zm001, subject, "F.LD", ld, event="SE.LD").saved
    after = {"AESTDAT": "2026-02-26", "AEENDAT": "2026-02-27"}
    outcome = save_ae(session, zm001, subject, after | {"AERELLD": "NOT APPLICABLE"})
    assert refused(outcome, "IG.AE", "AERELLD", "after the first lymphodepletion dose")
    assert save_ae(session, zm001, subject, after | {"AERELLD": "NOT RELATED"}).saved
    before = {"AESTDAT": "2026-02-20", "AERELLD": "NOT APPLICABLE"}
    assert save_ae(session, zm001, subject, before).saved


# -- EC052 ICANS grade, EC053 event forms and their AE -----------------------------------------

ICANS_AE = {
    "AESPID": "AE002", "AETERM": "ICANS", "AESTDAT": "2026-03-04", "AEENDAT": "2026-03-06",
    "AESTTIM": "06:00", "AEDLTYN": "N", "AERELZM": "RELATED", "AESIYN": "Y", "AESI": ["ICANS"],
}  # fmt: skip
CRS_AE = {
    "AETERM": "Cytokine release syndrome", "AESTDAT": "2026-03-02", "AEENDAT": "2026-03-06",
    "AESTTIM": "06:00", "AEDLTYN": "N", "AERELZM": "RELATED", "AESIYN": "Y", "AESI": ["CRS"],
}  # fmt: skip


def test_ec052_icans_investigator_grade_differs_from_the_derived_grade(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, ICANS_AE).saved
    assert save_icans(session, zm001, subject, ICANSGRINV="2").saved
    [query] = queries(session, "EC052")
    assert query.item_oid == "IT.ICANS.ICANSGRINV"
    assert query.text.startswith("The investigator's ICANS grade differs")
    assert save_icans(session, zm001, subject, ICANSGRINV="1").saved
    assert queries(session, "EC052") == []


@pytest.mark.parametrize(
    "ae",
    [None, AE_ROW | {"AESPID": "AE001"}, CRS_AE | {"AESPID": "AE001", "AETOXGR": "2"}],
    ids=["no AE", "AE not CRS", "another grade"],
)
def test_ec053_a_crs_episode_needs_its_crs_ae_with_the_episode_grade(
    session: Session, zm001: Study, ae: dict[str, Any] | None
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    if ae is not None:
        assert save_ae(session, zm001, subject, ae).saved
    assert save_crs(session, zm001, subject, CRSGRINV="1").saved
    [query] = queries(session, "EC053")
    assert query.item_oid == "IT.CRS.CRSAEID"
    assert query.text.startswith("The linked AE number must be an adverse event")
    assert save_ae(session, zm001, subject, CRS_AE | {"AESPID": "AE001", "AETOXGR": "1"}).saved
    assert queries(session, "EC053") == []  # the AE agrees now: closed by the AE's save


def test_ec053_2_an_icans_episode_needs_its_icans_ae_with_the_episode_grade(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, ICANS_AE | {"AETOXGR": "3"}).saved
    assert save_icans(session, zm001, subject).saved
    [query] = queries(session, "EC053.2")
    assert query.item_oid == "IT.ICANS.ICANSAEID"
    assert save_ae(session, zm001, subject, ICANS_AE | {"AETOXGR": "1"}).saved
    assert queries(session, "EC053.2") == []


@pytest.mark.parametrize(
    ("ae", "episode"),
    [(CRS_AE | {"AESPID": "AE001", "AETOXGR": "1"}, "CRS"), (ICANS_AE | {"AETOXGR": "1"}, "ICANS")],
    ids=["CRS", "ICANS"],
)
def test_ec053_3_a_crs_or_icans_ae_needs_its_episode_form_found_by_a_batch_run(
    session: Session, zm001: Study, ae: dict[str, Any], episode: str
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, ae).saved
    assert queries(session, "EC053.3") == []  # batch-only: the save opens nothing
    assert "EC053.3" in factories.run_batch_checks(session, zm001, subject)
    [query] = queries(session, "EC053.3")
    assert query.item_oid == "IT.AE.AESI"
    if episode == "CRS":
        assert save_crs(session, zm001, subject, CRSGRINV="1").saved
    else:
        assert save_icans(session, zm001, subject).saved  # cites AE002
    assert "EC053.3" not in factories.run_batch_checks(session, zm001, subject)
    assert queries(session, "EC053.3") == []


def test_ec053_3_an_ae_of_no_special_interest_needs_no_episode(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert save_ae(session, zm001, subject, AE_ROW).saved
    assert "EC053.3" not in factories.run_batch_checks(session, zm001, subject)


# -- EC054, EC055 CRS episode ------------------------------------------------------------------


def test_ec054_no_crs_before_the_infusion(session: Session, zm001: Study) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, CRS_AE | {"AESPID": "AE001"}).saved
    outcome = save_crs(session, zm001, subject, CRSGRINV="1", CRSSTDTM="2026-03-01 08:00")
    assert refused(outcome, "IG.CRS", "CRSSTDTM", "before the ZM001 infusion")
    assert save_crs(session, zm001, subject, CRSGRINV="1", CRSSTDTM="2026-03-01 12:00").saved


@pytest.mark.parametrize(
    ("check", "item", "wrong", "right", "grade"),
    [
        ("EC055", "IT.CRS.O2FLOW", {"O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "8"},
         {"O2DEV": "HIGH-FLOW NASAL CANNULA", "O2FLOW": "8"}, "3"),
        ("EC055.2", "IT.CRS.VASONUM", {"HYPOTYN": "Y", "VASONUM": "0", "VASOPRESSIN": "Y"},
         {"HYPOTYN": "Y", "VASONUM": "1", "VASOPRESSIN": "Y"}, "3"),
    ],
)  # fmt: skip
def test_ec055_crs_oxygen_device_and_vasopressin_queries(
    session: Session,
    zm001: Study,
    check: str,
    item: str,
    wrong: dict[str, str],
    right: dict[str, str],
    grade: str,
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, CRS_AE | {"AESPID": "AE001", "AETOXGR": grade}).saved
    assert save_crs(session, zm001, subject, wrong, CRSGRINV=grade).saved
    [query] = queries(session, check)
    assert query.item_oid == item
    assert save_crs(session, zm001, subject, right, CRSGRINV=grade).saved
    assert queries(session, check) == []


# -- EC056 CRS treatment needs a CRS episode ---------------------------------------------------


@pytest.mark.parametrize(
    ("medication", "asks"),
    [
        ({"CMTRT": "Tocilizumab", "CMCAT": "ANTI-CYTOKINE", "CMINDC": "CRS"}, True),
        ({"CMTRT": "Dexamethasone", "CMCAT": "GLUCOCORTICOID", "CMGCAGT": "DEXAMETHASONE",
          "CMINDC": "Grade 2 CRS"}, True),
        ({"CMTRT": "Prednisone", "CMCAT": "GLUCOCORTICOID", "CMGCAGT": "PREDNISONE",
          "CMINDC": "SLE"}, False),
    ],
    ids=["tocilizumab", "steroid for CRS", "steroid for SLE"],
)  # fmt: skip
def test_ec056_crs_treatment_needs_a_crs_episode_covering_its_date(
    session: Session, zm001: Study, medication: dict[str, str], asks: bool
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    row = medication | {"CMSTDAT": "2026-03-03", "CMENDAT": "2026-03-03"}
    assert save_cm(session, zm001, subject, row).saved
    assert len(queries(session, "EC056")) == (1 if asks else 0)
    assert save_ae(session, zm001, subject, CRS_AE | {"AESPID": "AE001", "AETOXGR": "1"}).saved
    assert save_crs(session, zm001, subject, CRSGRINV="1", CRSENDTM="2026-03-05 08:00").saved
    assert queries(session, "EC056") == []


# -- EC057, EC058 DLT assessment ---------------------------------------------------------------

DLT_AE = {"AESTDAT": "2026-03-10", "AEENDAT": "2026-03-12", "AESTTIM": "08:00", "AETOXGR": "3"}


def save_dlt(session: Session, study: Study, subject: Subject, **values: Any) -> Outcome:
    return factories.save(session, study, subject, "F.DLT", {"IG.DLT": {1: values}}, event="SE.D28")


def test_ec057_a_dlt_needs_an_ae_marked_as_dlt_in_the_window(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_ae(session, zm001, subject, DLT_AE | {"AEDLTYN": "N"}).saved
    outcome = save_dlt(session, zm001, subject, DLTYN="Y")
    assert refused(outcome, "IG.DLT", "DLTYN", "no adverse event with onset in the DLT window")
    assert save_ae(session, zm001, subject, DLT_AE | {"AEDLTYN": "Y"}).saved
    assert save_dlt(session, zm001, subject, DLTYN="Y").saved


def test_ec058_evaluable_without_dlt_needs_the_day_28_assessment(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    outcome = save_dlt(session, zm001, subject, DLTEVAL="Y", DLTYN="N")
    assert refused(outcome, "IG.DLT", "DLTEVAL", "completing the DLT window")
    assert factories.date_visit(session, zm001, subject, "SE.D28", date(2026, 3, 29)).saved
    pe = {"IG.PE": {1: {"PEDAT": "2026-03-29"}}}
    assert factories.save(session, zm001, subject, "F.PE", pe, event="SE.D28").saved
    assert save_dlt(session, zm001, subject, DLTEVAL="Y", DLTYN="N").saved


@pytest.mark.parametrize("left", ["died", "withdrew"])
def test_ec058_evaluable_without_dlt_not_after_leaving_in_the_window(
    session: Session, zm001: Study, left: str
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    if left == "died":
        assert save_dd(session, zm001, subject, "2026-03-20").saved
    else:
        assert save_ds(session, zm001, subject, DSSTDAT="2026-03-20").saved
    assert factories.date_visit(session, zm001, subject, "SE.D28", date(2026, 3, 29)).saved
    pe = {"IG.PE": {1: {"PEDAT": "2026-03-29"}}}
    assert factories.save(session, zm001, subject, "F.PE", pe, event="SE.D28").saved
    outcome = save_dlt(session, zm001, subject, DLTEVAL="Y", DLTYN="N")
    assert refused(outcome, "IG.DLT", "DLTEVAL", "completing the DLT window")
    assert save_dlt(session, zm001, subject, DLTEVAL="N", DLTNEVRS="OTHER", DLTYN="N").saved


# -- EC059 automatic DLT patterns --------------------------------------------------------------

GRADE_3 = {"HYPOTYN": "Y", "VASONUM": "1"}
GRADE_2 = {"HYPOTYN": "Y"}


@pytest.mark.parametrize(
    ("rows", "grade", "asks"),
    [
        ([{"VASONUM": "2", "HYPOTYN": "Y"}], "4", True),
        ([{"ASMDTM": "2026-03-02 08:00"} | GRADE_3, {"ASMDTM": "2026-03-04 08:00"} | GRADE_3,
          {"ASMDTM": "2026-03-06 08:00"}], "3", True),
        ([{"ASMDTM": "2026-03-02 08:00"} | GRADE_3, {"ASMDTM": "2026-03-03 08:00"} | GRADE_2,
          {"ASMDTM": "2026-03-06 08:00"}], "3", False),
        ([GRADE_2], "2", False),
    ],
    ids=["grade 4", "grade 3 over 72 h", "grade 3 improving in 24 h", "grade 2"],
)  # fmt: skip
def test_ec059_crs_dlt_patterns_marked_not_dlt_raise_a_query(
    session: Session, zm001: Study, rows: list[dict[str, str]], grade: str, asks: bool
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    ae = CRS_AE | {"AESPID": "AE001", "AETOXGR": grade, "AEDLTYN": "N"}
    assert save_ae(session, zm001, subject, ae).saved
    assert save_crs(session, zm001, subject, *rows, CRSGRINV=grade).saved
    assert len(queries(session, "EC059")) == (1 if asks else 0)
    assert save_ae(session, zm001, subject, ae | {"AEDLTYN": "Y"}).saved
    assert queries(session, "EC059") == []


def test_ec059_grade_5_and_icans_grade_3_marked_not_dlt_raise_a_query(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_dd(session, zm001, subject, "2026-03-20").saved
    fatal = FATAL | {"AESTTIM": "08:00", "AERELZM": "RELATED", "AEDLTYN": "N"}
    icans = ICANS_AE | {"AETOXGR": "3"}
    assert save_ae(session, zm001, subject, fatal, icans).saved
    assert save_icans(
        session, zm001, subject, {"LOC": "AWAKENS TO TACTILE STIMULUS"}, ICANSGRINV="3"
    ).saved
    assert sorted(q.group_repeat or 0 for q in queries(session, "EC059")) == [1, 2]
    assert save_ae(
        session, zm001, subject, fatal | {"AEDLTYN": "Y"}, icans | {"AEDLTYN": "Y"}
    ).saved
    assert queries(session, "EC059") == []


# -- EC057.2, EC059.2 the DLT assessment and the AEs marked as DLTs ---------------------------

DLT_AE = {
    "AESPID": "AE002", "AETERM": "Neutropenic sepsis", "AESTDAT": "2026-03-12", "AEONGO": "Y",
    "AEENDAT": None, "AETOXGR": "3", "AERELZM": "RELATED", "AERELLD": "POSSIBLY RELATED",
    "AEOUT": "NOT RECOVERED/NOT RESOLVED", "AEDLTYN": "Y",
}  # fmt: skip
"""A grade 3 event on day 11, marked by the investigator as meeting the DLT criteria."""


def save_dlt_assessment(session: Session, study: Study, subject: Subject, dlt: str) -> Outcome:
    assessment = {"DLTEVAL": "N", "DLTNEVRS": "OTHER", "DLTNEVSP": "Unrelated sepsis", "DLTYN": dlt}
    if dlt == "Y":
        assessment = {
            "DLTEVAL": "Y", "DLTYN": "Y", "DLTCRIT": ["DLT05"], "DLTAEID": "AE002",
            "DSMBDAT": "2026-03-20", "DSMBCONF": "Y",
        }  # fmt: skip
    return factories.save(
        session, study, subject, "F.DLT", {"IG.DLT": {1: assessment}}, event="SE.D28",
        by="investigator",
    )  # fmt: skip


def test_ec057_2_an_ae_marked_dlt_against_a_no_dlt_assessment_raises_a_query(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_dlt_assessment(session, zm001, subject, "N").saved
    assert save_ae(session, zm001, subject, AE_ROW, DLT_AE).saved
    [query] = queries(session, "EC057.2")
    assert (query.item_oid, query.group_repeat) == ("IT.AE.AEDLTYN", 2)
    assert query.text.startswith("This event is marked as meeting the DLT criteria, but")
    assert save_dlt_assessment(session, zm001, subject, "Y").saved
    assert queries(session, "EC057.2") == []


def test_ec059_2_an_ae_marked_dlt_prompts_the_assessment_in_a_batch_run(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    late = DLT_AE | {"AESPID": "AE003", "AESTDAT": "2026-03-30"}  # day 29: outside the window
    assert save_ae(session, zm001, subject, AE_ROW, DLT_AE, late).saved
    assert queries(session, "EC059.2") == []  # batch-only
    assert "EC059.2" in factories.run_batch_checks(session, zm001, subject)
    [query] = queries(session, "EC059.2")
    assert query.group_repeat == 2
    assert save_dlt_assessment(session, zm001, subject, "Y").saved
    assert "EC059.2" not in factories.run_batch_checks(session, zm001, subject)


# -- EC061, EC062 disposition ------------------------------------------------------------------


def test_ec061_end_of_study_not_before_a_visit_ae_or_medication(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert factories.date_visit(session, zm001, subject, "SE.M2", date(2026, 5, 1)).saved
    assert save_cm(session, zm001, subject, {"CMSTDAT": "2026-05", "CMENDAT": "2026-06"}).saved
    outcome = save_ds(session, zm001, subject, DSSTDAT="2026-04-15")
    assert refused(outcome, "IG.DS", "DSSTDAT", "before a visit, adverse event or medication")
    outcome = save_ds(session, zm001, subject, DSSTDAT="2026-05-15")  # the CM ended in June
    assert refused(outcome, "IG.DS", "DSSTDAT", "before a visit, adverse event or medication")
    assert save_ds(session, zm001, subject, DSSTDAT="2026-06-15").saved  # June: not known later
    assert save_ae(session, zm001, subject, {"AESTDAT": "2026-06-01", "AEENDAT": "2026-06-20"})
    assert len(queries(session, "EC061")) == 1  # broken by the AE log: a query


def test_ec061_2_completed_needs_the_month_12_visit(session: Session, zm001: Study) -> None:
    subject = factories.register(session, zm001)
    outcome = save_ds(session, zm001, subject, DSDECOD="COMPLETED", DSSTDAT="2026-11-10")
    assert refused(outcome, "IG.DS", "DSDECOD", "only after the month 12 visit")
    assert factories.date_visit(session, zm001, subject, "SE.M12", date(2026, 11, 1)).saved
    assert save_ds(session, zm001, subject, DSDECOD="COMPLETED", DSSTDAT="2026-11-10").saved


def test_ec062_leukapheresed_not_infused_needs_a_not_infused_reason(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    aph = {"IG.APH": {1: {"APHYN": "Y"}}}
    assert factories.save(session, zm001, subject, "F.APH", aph, event="SE.APH").saved
    outcome = save_ds(session, zm001, subject, DSDECOD="LOST TO FOLLOW-UP")
    assert refused(outcome, "IG.DS", "DSDECOD", "leukapheresis but no infusion")
    assert save_ds(session, zm001, subject, DSDECOD="NOT INFUSED - MANUFACTURING FAILURE").saved
    infuse(session, zm001, subject)
    assert save_ds(session, zm001, subject, DSDECOD="LOST TO FOLLOW-UP").saved


# -- EC063 positive pregnancy test before lymphodepletion --------------------------------------


@pytest.mark.parametrize(
    ("form", "event", "rows", "group", "item"),
    [
        ("F.LD", "SE.LD", {"IG.LD": {1: {"LDBSA": "1.70"}}}, "IG.LD", "LDBSA"),
        ("F.EX", "SE.D0", {"IG.EX": {1: {"EXSTDTM": D0}}}, "IG.EX", "EXSTDTM"),
    ],
    ids=["EC063 lymphodepletion", "EC063.2 infusion"],
)
def test_ec063_no_lymphodepletion_or_infusion_after_a_positive_pregnancy_test(
    session: Session, zm001: Study, form: str, event: str, rows: Any, group: str, item: str
) -> None:
    subject = factories.register(session, zm001)
    test = {"PGDAT": "2026-02-20", "PGSPEC": "SERUM", "PGRES": "POSITIVE"}
    preg = {"IG.PREG": {1: test}}
    assert factories.save(session, zm001, subject, "F.PREG", preg, event="SE.BL").saved
    outcome = factories.save(session, zm001, subject, form, rows, event=event)
    assert refused(outcome, group, item, "pregnancy test before lymphodepletion is positive")
    preg = {"IG.PREG": {1: test | {"PGRES": "NEGATIVE"}}}
    assert factories.save(session, zm001, subject, "F.PREG", preg, event="SE.BL").saved
    assert factories.save(session, zm001, subject, form, rows, event=event).saved


# -- EC064, EC065 medications ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "consistent"),
    [
        ("2026-03-10", "2026-03-01", False),
        ("2026-03-10", "2026-03", True),
        ("2026-03-10", "2026-02", False),
        ("2026-03", "2026-03-01", True),
        ("2026", "2025-12", False),
        ("2026-03-10", "2026-03-10", True),
    ],
)
def test_ec064_medication_end_not_before_its_start(
    session: Session, zm001: Study, start: str, end: str, consistent: bool
) -> None:
    subject = factories.register(session, zm001)
    outcome = save_cm(session, zm001, subject, {"CMSTDAT": start, "CMENDAT": end})
    if consistent:
        assert outcome.saved
    else:
        assert refused(outcome, "IG.CM", "CMENDAT", "end date is before the start date")


PREDNISONE = {
    "CMTRT": "Prednisone", "CMINDC": "SLE", "CMCAT": "GLUCOCORTICOID", "CMGCAGT": "PREDNISONE",
    "CMDOSE": "20", "CMDOSU": "mg", "CMDOSFRQ": "QD", "CMSTDAT": "2025-06", "CMONGO": "Y",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "asks"),
    [
        ({}, True),
        ({"CMDOSE": "10"}, False),
        ({"CMONGO": "N", "CMENDAT": "2026-02-25"}, True),
        ({"CMONGO": "N", "CMENDAT": "2026-02-20"}, False),
        ({"CMSTDAT": "2026-03-02"}, False),
        ({"CMSTDAT": "2026-03"}, False),
    ],
    ids=["20 mg ongoing", "10 mg", "ended D-4", "ended D-9", "started D1", "started March"],
)
def test_ec065_corticosteroid_above_the_limit_before_the_infusion(
    session: Session, zm001: Study, change: dict[str, str], asks: bool
) -> None:
    subject = factories.register(session, zm001)
    infuse(session, zm001, subject)
    assert save_cm(session, zm001, subject, PREDNISONE | change).saved
    found = queries(session, "EC065")
    assert len(found) == (1 if asks else 0)
    if asks:
        assert found[0].item_oid == "IT.CM.CMDOSE" and found[0].require_response


def test_ec065_the_query_opens_when_the_infusion_is_recorded_after_the_medication(
    session: Session, zm001: Study
) -> None:
    subject = factories.register(session, zm001)
    assert save_cm(session, zm001, subject, PREDNISONE).saved
    assert queries(session, "EC065") == []
    infuse(session, zm001, subject)
    assert len(queries(session, "EC065")) == 1

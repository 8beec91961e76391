"""The edit-check engine on data entered through the write path: hard checks refuse the save
of their form with the message next to the item, soft checks open a system query that the
system resolves and closes once the data agree (both databases)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.audit import AuditAction
from app.models import AuditRecord, ItemData, Query, QueryState
from app.study.edit_checks import EditCheck, Severity
from app.study.loader import Study
from tests import factories

CRS_ROW = {
    "ASMDTM": "2026-03-03 08:00", "TMAX": "38.6", "FEVERYN": "Y", "ANTIPYR_ANTICYT": "N",
    "HYPOTYN": "N", "FLUIDYN": "N", "VASONUM": "0", "VASOPRESSIN": "N", "O2DEV": "NONE",
    "TOCINUM": "0", "STERYN": "N", "ICUYN": "N",
}  # fmt: skip
"""A day of grade 1 CRS: fever alone."""
CRS_EPISODE = {"CRSSTDTM": "2026-03-02 20:00", "CRSDTHYN": "N", "CRSAEID": "AE001"}
CRS_AE = {
    "AESPID": "AE001", "AETERM": "Cytokine release syndrome", "AESTDAT": "2026-03-02",
    "AEONGO": "Y", "AETOXGR": "1", "AESIYN": "Y", "AESI": ["CRS"],
}  # fmt: skip
"""The AE the episode cites (EC053: a CRS episode needs its CRS AE, of the episode's grade)."""


def crs(grade: str) -> dict[str, dict[int, dict[str, str]]]:
    return {"IG.CRS": {1: CRS_EPISODE | {"CRSGRINV": grade}}, "IG.CRS.ASM": {1: CRS_ROW}}


def test_a_hard_check_refuses_the_save_with_its_message_next_to_the_item(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        ae = {"AETERM": "Headache", "AESTDAT": "2026-02-10", "AEONGO": "N", "AEENDAT": "2026-02-01"}
        outcome = factories.save(
            session, zm001, subject, "F.AE", {"IG.AE": {1: ae}}, event="SE.LOG"
        )
        assert not outcome.saved
        assert outcome.evaluation.errors[("IG.AE", 1, "AEENDAT")].startswith(
            "The end date must be on or after the start date"
        )
        assert session.exec(select(ItemData)).all() == []
        ae["AEENDAT"] = "2026-02-12"
        assert factories.save(
            session, zm001, subject, "F.AE", {"IG.AE": {1: ae}}, event="SE.LOG"
        ).saved


def test_a_hard_check_reads_another_form(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(
            session, zm001, subject, "F.IC", {"IG.IC": {1: {"ICDAT": "2026-01-10"}}}
        ).saved
        ae = {"AETERM": "Headache", "AESTDAT": "2026-01-05"}
        outcome = factories.save(
            session, zm001, subject, "F.AE", {"IG.AE": {1: ae}}, event="SE.LOG"
        )
        assert "before informed consent" in outcome.evaluation.errors[("IG.AE", 1, "AESTDAT")]


def test_a_soft_check_opens_a_query_that_the_system_closes_once_the_data_agree(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        ae = {"IG.AE": {1: CRS_AE}}
        assert factories.save(session, zm001, subject, "F.AE", ae, event="SE.LOG").saved
        saved = factories.save(session, zm001, subject, "F.CRS", crs("2"), event="SE.LOG")
        assert saved.saved
        query = session.exec(select(Query)).one()
        assert (query.check_id, query.state, query.item_oid) == ("EC051", "open", "IT.CRS.CRSGRINV")
        assert query.text.startswith("The investigator's CRS grade differs")

        assert factories.save(session, zm001, subject, "F.CRS", crs("2"), event="SE.LOG").saved
        assert len(session.exec(select(Query)).all()) == 1  # the same finding, the same query

        assert factories.save(session, zm001, subject, "F.CRS", crs("1"), event="SE.LOG").saved
        session.refresh(query)
        assert query.state == QueryState.CLOSED
        trail = session.exec(
            select(AuditRecord.action, AuditRecord.old_value, AuditRecord.new_value, AuditRecord.username)
            .where(col(AuditRecord.action).like("query_%"))
            .order_by(col(AuditRecord.id))
        ).all()  # fmt: skip
        assert trail == [
            (AuditAction.QUERY_OPEN, None, "open", "system"),
            (AuditAction.QUERY_RESOLVE, "open", "resolved", "system"),
            (AuditAction.QUERY_CLOSE, "resolved", "closed", "system"),
        ]

        assert factories.save(session, zm001, subject, "F.CRS", crs("3"), event="SE.LOG").saved
        session.refresh(query)
        assert query.state == QueryState.OPEN  # re-opened, not a new query
        assert len(session.exec(select(Query)).all()) == 1


def test_dating_a_visit_runs_the_checks_that_read_visit_dates(
    demo_engine: Engine, zm001: Study
) -> None:
    same_day = EditCheck(
        id="EC900", form="F.PGA", items=("PGADAT",), severity=Severity.SOFT,
        condition="PGADAT == null || visit.date == null || PGADAT == visit.date",
        message="The assessment is dated on another day than the visit.",
    )  # fmt: skip
    study = replace(zm001, checks=(same_day,), check_files=("forms/checks/X.yaml",))
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, study)
        pga = {"IG.PGA": {1: {"PGADAT": "2026-01-05"}}}
        assert factories.save(session, study, subject, "F.PGA", pga).saved
        assert session.exec(select(Query)).all() == []  # the visit has no date yet
        factories.date_visit(session, study, subject, "SE.SCR", date(2026, 1, 6))
        query = session.exec(select(Query)).one()
        assert (query.check_id, query.state) == ("EC900", "open")
        factories.date_visit(session, study, subject, "SE.SCR", date(2026, 1, 5), reason="typo")
        session.refresh(query)
        assert query.state == QueryState.CLOSED


def test_an_old_row_that_fails_a_hard_check_does_not_block_a_new_row(
    demo_engine: Engine, zm001: Study
) -> None:
    broken = {"AETERM": "Rash", "AESTDAT": "2026-02-10", "AEONGO": "N", "AEENDAT": "2026-02-01"}
    unchecked = replace(zm001, checks=(), check_files=())
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        rows = {"IG.AE": {1: broken}}
        assert factories.save(session, unchecked, subject, "F.AE", rows, event="SE.LOG").saved
        headache = {"AETERM": "Headache", "AESTDAT": "2026-02-11", "AEONGO": "Y"}
        saved = factories.save(session, zm001, subject, "F.AE", {"IG.AE": {2: headache}}, event="SE.LOG")
        assert saved.saved
        query = session.exec(select(Query)).one()
        assert (query.check_id, query.group_repeat, query.state) == ("EC045", 1, "open")

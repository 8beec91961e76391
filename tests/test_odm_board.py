"""The safety board's decisions in the ODM exports (`app.exporters.odm_board`): each an
Annotation of ClinicalData with its Signature, the signer a User and the board a Location of
AdminData, one SignatureDef per meaning, the decision kind and levels as flags of code lists
of the metadata; in whole-study and cohort exports, not in a site's or a subject's; Inserts in
the transactional export; schema-valid, and read past by the import (both databases)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import load_access
from app.db import unit_of_work
from app.demo import DEMO_PASSWORD
from app.escalation.decisions import DEFAULT_MEANING, DecisionRequest, record_decision
from app.escalation.gates import DecisionKind
from app.escalation.records import BoardDecisionRecord
from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.scope import ExportScope, ScopeKind
from app.models import Subject, pk, utcnow
from app.study.loader import Study
from tests import factories
from tests.conftest import ODM_SCHEMA
from tests.test_odm_import import run_import
from tests.test_sdtm_arms import enrolled

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
PAUSE_MEANING = "I record the pause the safety board decided at its meeting."


@dataclass(frozen=True)
class Board:
    """Two decisions (DL2 opened overriding the rules, then a pause) and a subject at DL1."""

    opened: BoardDecisionRecord
    paused: BoardDecisionRecord
    subject: Subject


@pytest.fixture
def board(demo_engine: Engine, zm001: Study) -> Board:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = enrolled(session, zm001, "DL1")
        factories.open_level(session, zm001, "DL2", date(2026, 1, 20))
        with unit_of_work(session):
            access = load_access(session, factories.user(session, "sponsor"), zm001.id)
            request = DecisionRequest(
                DecisionKind.PAUSE, (), date(2026, 1, 21), "A serious infection at DL2.",
                DEMO_PASSWORD, meaning=PAUSE_MEANING, minutes_reference="SRC-2026-02",
            )  # fmt: skip
            record_decision(session, zm001, access, request, source="test", now=utcnow())
        opened, paused = session.exec(
            select(BoardDecisionRecord).order_by(col(BoardDecisionRecord.id))
        )
        return Board(opened, paused, subject)


def export(
    engine: Engine, study: Study, path: Path, scope: ExportScope, *, transactional: bool = False
) -> etree._ElementTree:
    with Session(engine) as session:
        writer = write_odm_transactional if transactional else write_odm_snapshot
        writer(session, study, path, scope)
    document = etree.parse(str(path))
    schema = etree.XMLSchema(file=str(ODM_SCHEMA))
    assert schema.validate(document), schema.error_log
    return document


def decisions(document: etree._ElementTree) -> list[etree._Element]:
    return document.findall("odm:ClinicalData/odm:Annotations/odm:Annotation", NS)


def flags(annotation: etree._Element) -> list[tuple[str | None, str | None]]:
    return [
        (
            flag.findtext("odm:FlagType", namespaces=NS),
            flag.findtext("odm:FlagValue", namespaces=NS),
        )
        for flag in annotation.iterfind("odm:Flag", NS)
    ]


def test_each_decision_is_an_annotation_of_clinical_data_with_its_signature(
    demo_engine: Engine, zm001: Study, board: Board, tmp_path: Path
) -> None:
    document = export(demo_engine, zm001, tmp_path / "odm.xml", ExportScope(study_id=zm001.id))
    clinical = document.find("odm:ClinicalData", NS)
    assert clinical is not None
    assert [etree.QName(child).localname for child in clinical] == [
        "SubjectData", "Signatures", "Annotations",
    ]  # fmt: skip
    opened, paused = decisions(document)
    assert [(a.get("ID"), a.get("SeqNum"), a.get("TransactionType")) for a in (opened, paused)] == [
        (f"BD.{board.opened.id}", "1", None), (f"BD.{board.paused.id}", "2", None),
    ]  # fmt: skip
    assert flags(opened) == [("BOARDDECISION", "escalate"), ("DOSELEVEL", "DL2")]
    assert flags(paused) == [("BOARDDECISION", "pause")]
    comment = opened.find("odm:Comment", NS)
    assert comment is not None and comment.get("SponsorOrSite") == "Sponsor"
    assert (comment.text or "").splitlines() == [
        "Escalate to the next level DL2, 2026-01-20.",
        "Rationale: Opened for the test.",
        "Overriding the rules: The test starts at this level.",
        f"The rules recommended {board.opened.engine_state}"
        + (f" at {board.opened.engine_level}" if board.opened.engine_level else "")
        + f": {board.opened.engine_reason}",
    ]
    assert "Minutes: SRC-2026-02" in (paused.findtext("odm:Comment", namespaces=NS) or "")

    codes = {
        codelist.get("OID"): {item.get("CodedValue") for item in codelist}
        for codelist in document.iterfind(".//odm:MetaDataVersion/odm:CodeList", NS)
    }
    for value in opened.iterfind("odm:Flag/*", NS):
        assert value.text in codes[value.get("CodeListOID")]

    signatures = document.findall("odm:ClinicalData/odm:Signatures/odm:Signature", NS)
    assert [s.get("ID") for s in signatures] == [
        f"BD.{board.opened.id}.SIG",
        f"BD.{board.paused.id}.SIG",
    ]
    first = signatures[0]
    assert [etree.QName(child).localname for child in first] == [
        "UserRef", "LocationRef", "SignatureRef", "DateTimeStamp",
    ]  # fmt: skip
    assert first.findtext("odm:DateTimeStamp", namespaces=NS) == board.opened.signed_at.isoformat(
        timespec="seconds"
    )
    user = _ref(first, "UserRef", "UserOID")
    assert (
        document.findtext(f".//odm:User[@OID='{user}']/odm:FullName", namespaces=NS) == "Zhao Lei"
    )
    location = document.find(
        f".//odm:AdminData/odm:Location[@OID='{_ref(first, 'LocationRef', 'LocationOID')}']", NS
    )
    assert location is not None and location.get("LocationType") == "Sponsor"
    meanings = [
        document.findtext(
            f".//odm:SignatureDef[@OID='{_ref(s, 'SignatureRef', 'SignatureOID')}']/odm:Meaning",
            namespaces=NS,
        )
        for s in signatures
    ]
    assert meanings == [DEFAULT_MEANING, PAUSE_MEANING]


def _ref(element: etree._Element, tag: str, attribute: str) -> str | None:
    found = element.find(f"odm:{tag}", NS)
    assert found is not None
    return found.get(attribute)


def test_a_cohort_export_holds_the_decisions_and_a_site_or_subject_export_none(
    demo_engine: Engine, zm001: Study, board: Board, tmp_path: Path
) -> None:
    cohort = ExportScope(study_id=zm001.id, kind=ScopeKind.COHORT, dose_level="DL1")
    document = export(demo_engine, zm001, tmp_path / "cohort.xml", cohort)
    assert len(decisions(document)) == 2
    # The signer is in AdminData although the cohort's audit trail does not name them.
    assert document.findtext(".//odm:User[odm:LoginName='sponsor']/odm:FullName", namespaces=NS)

    site = ExportScope(study_id=zm001.id, kind=ScopeKind.SITE, site_id=board.subject.site_id)
    one = ExportScope(study_id=zm001.id, kind=ScopeKind.SUBJECT, subject_id=pk(board.subject))
    for name, scope in (("site", site), ("subject", one)):
        document = export(demo_engine, zm001, tmp_path / f"{name}.xml", scope)
        assert decisions(document) == [], name
        assert document.find("odm:ClinicalData/odm:Signatures", NS) is None
        assert document.find(".//odm:Location[@LocationType='Sponsor']", NS) is None
        assert document.find(".//odm:User[odm:LoginName='sponsor']", NS) is None
        assert len(document.findall("odm:ClinicalData/odm:SubjectData", NS)) == 1


def test_the_transactional_export_inserts_each_decision_signed_in_its_period(
    demo_engine: Engine, zm001: Study, board: Board, tmp_path: Path
) -> None:
    whole = ExportScope(study_id=zm001.id)
    document = export(demo_engine, zm001, tmp_path / "all.xml", whole, transactional=True)
    assert [a.get("TransactionType") for a in decisions(document)] == ["Insert", "Insert"]
    later = ExportScope(study_id=zm001.id, changed_since=board.opened.signed_at)
    for transactional in (True, False):
        document = export(
            demo_engine, zm001, tmp_path / f"later-{transactional}.xml", later,
            transactional=transactional,
        )  # fmt: skip
        assert [a.get("ID") for a in decisions(document)] == [f"BD.{board.paused.id}"]
        assert [d.get("OID") for d in document.iterfind(".//odm:SignatureDef", NS)][-1:] == [
            "SD.BOARD.1"
        ]


def test_the_import_reads_past_the_decisions(
    demo_engine: Engine, zm001: Study, board: Board, tmp_path: Path
) -> None:
    document = export(demo_engine, zm001, tmp_path / "odm.xml", ExportScope(study_id=zm001.id))
    subject = document.find("odm:ClinicalData/odm:SubjectData", NS)
    assert subject is not None and decisions(document)
    subject.set("SubjectKey", "01-901")  # a new subject of the same database
    document.write(str(tmp_path / "renamed.xml"))
    report = run_import(demo_engine, zm001, tmp_path / "renamed.xml")
    assert report.stored and report.subjects == 1, report.format()
    with Session(demo_engine) as session:
        assert len(session.exec(select(BoardDecisionRecord)).all()) == 2  # none added

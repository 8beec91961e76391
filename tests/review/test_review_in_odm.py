"""Queries and freezes in the ODM snapshot: an Annotation on the item, form or visit with a
coded Flag (CL.QUERYSTATE, CL.LOCKSTATE) and a JSON Comment, valid against the ODM 1.3.2 schema
(both databases)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session

from app.crf.changes import DataLockSet, QueryOpen, QueryTarget
from app.exporters.odm_clinical import write_odm_snapshot
from app.models import pk
from app.schemas import odm_schema, validate_streaming
from app.study.loader import Study
from tests import factories
from tests.checks.test_check_engine import CRS_AE, crs

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


def flags(element: etree._Element) -> list[tuple[str, str, str]]:
    return [
        (
            value.get("CodeListOID") or "",
            value.text or "",
            "".join(a.find("odm:Comment", NS).itertext()),
        )
        for a in element.iterfind("odm:Annotation", NS)
        for value in a.iterfind("odm:Flag/odm:FlagValue", NS)
        if value.get("CodeListOID") in ("CL.QUERYSTATE", "CL.LOCKSTATE")
    ]


def test_queries_and_freezes_are_annotations_of_the_snapshot(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(
            session, zm001, subject, "F.AE", {"IG.AE": {1: CRS_AE}}, event="SE.LOG"
        ).saved
        assert factories.save(session, zm001, subject, "F.CRS", crs("2"), event="SE.LOG").saved
        visit = QueryTarget("SE.SCR")
        factories.date_visit(session, zm001, subject, "SE.SCR", date(2026, 1, 5))
        factories.apply(
            session,
            zm001,
            QueryOpen(pk(subject), visit, "Was the visit done on site?"),
            by="monitor",
        )
        lock = DataLockSet(pk(subject), "freeze", "SDV done", "SE.LOG", 1, "F.CRS", 1)
        factories.apply(session, zm001, lock, by="datamanager")
        path = tmp_path / "snapshot.xml"
        write_odm_snapshot(session, zm001, path)
    assert validate_streaming(path, odm_schema()) > 0
    document = etree.parse(str(path))
    item = document.find(
        ".//odm:FormData[@FormOID='F.CRS']//odm:ItemData[@ItemOID='IT.CRS.CRSGRINV']", NS
    )
    assert item is not None
    ((codelist, state, comment),) = flags(item)
    assert (codelist, state) == ("CL.QUERYSTATE", "open")
    query = json.loads(comment)
    assert (query["query"], query["check"], query["response"]) == (1, "EC051", None)
    assert query["text"].startswith("The investigator's CRS grade differs")
    form = document.find(".//odm:FormData[@FormOID='F.CRS']", NS)
    assert form is not None
    ((codelist, level, comment),) = flags(form)
    assert (codelist, level) == ("CL.LOCKSTATE", "freeze")
    lock = json.loads(comment)
    assert (lock["on"], lock["reason"], lock["by"]) == ("form", "SDV done", "Liu Yang")
    event = document.find(".//odm:StudyEventData[@StudyEventOID='SE.SCR']", NS)
    assert event is not None
    assert [(c, s) for c, s, _ in flags(event)] == [("CL.QUERYSTATE", "open")]
    codelists = {c.get("OID") for c in document.iterfind(".//odm:CodeList", NS)}
    assert {"CL.QUERYSTATE", "CL.LOCKSTATE"} <= codelists

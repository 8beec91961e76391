"""Signatures in ODM 1.3.2. In the snapshot: the casebook's and a form's signature in force are
native Signature elements (UserRef, LocationRef, SignatureRef, DateTimeStamp) in SubjectData
and FormData, each SignatureDef is in AdminData, a broken signature is not exported, and the
file is schema-valid and imports into an empty database. In the transactional export: every
signing, valid and broken, in the order signed (both databases)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session

from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.scope import ExportScope
from app.study.loader import Study
from tests import factories
from tests.conftest import ODM_SCHEMA
from tests.review.test_signatures import IE, screened_subject, sign
from tests.test_odm_import import run_import

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}


def test_the_snapshot_holds_signatures_and_their_definitions(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        casebook = sign(session, zm001, subject)
        sign(session, zm001, subject, IE)
        other = screened_subject(session, zm001)
        sign(session, zm001, other)
        factories.save(session, zm001, other, "F.DM", {"IG.DM": {1: {"SEX": "M"}}})  # breaks it
        export = tmp_path / "snapshot.xml"
        write_odm_snapshot(session, zm001, export)
    document = etree.parse(str(export))
    schema = etree.XMLSchema(file=str(ODM_SCHEMA))
    assert schema.validate(document), schema.error_log

    defs = document.findall(".//odm:AdminData/odm:SignatureDef", NS)
    assert [d.get("OID") for d in defs] == ["SD.CASEBOOK", "SD.F.IE", "SD.F.DLT", "SD.F.DS"]
    assert {d.get("Methodology") for d in defs} == {"Electronic"}
    assert defs[0].findtext("odm:Meaning", namespaces=NS) == (
        "I approve the data in this casebook as complete and accurate."
    )
    assert "21 CFR Part 11" in (defs[0].findtext("odm:LegalReason", namespaces=NS) or "")

    first, second = document.findall(".//odm:SubjectData", NS)
    signature = first.find("odm:Signature", NS)
    assert signature is not None
    assert [etree.QName(child).localname for child in signature] == [
        "UserRef", "LocationRef", "SignatureRef", "DateTimeStamp",
    ]  # fmt: skip
    user = signature.find("odm:UserRef", NS).get("UserOID")  # type: ignore[union-attr]
    name = document.find(f".//odm:User[@OID='{user}']/odm:FullName", NS)
    assert name is not None and name.text == "Dr Li Wei"
    assert signature.find("odm:LocationRef", NS).get("LocationOID") == "SITE.01"  # type: ignore[union-attr]
    assert signature.find("odm:SignatureRef", NS).get("SignatureOID") == "SD.CASEBOOK"  # type: ignore[union-attr]
    assert signature.findtext("odm:DateTimeStamp", namespaces=NS) == casebook.signed_at.isoformat(
        timespec="seconds"
    )
    ie = first.find(".//odm:FormData[@FormOID='F.IE']/odm:Signature/odm:SignatureRef", NS)
    assert ie is not None and ie.get("SignatureOID") == "SD.F.IE"
    assert second.find("odm:Signature", NS) is None  # broken: not exported

    # The import reads past Signature elements (it does not restore signatures: the
    # investigator signs the imported data in TrialDesk).
    for key, subject_data in zip(("01-901", "01-902"), (first, second), strict=True):
        subject_data.set("SubjectKey", key)
    document.write(str(tmp_path / "renamed.xml"))
    report = run_import(demo_engine, zm001, tmp_path / "renamed.xml")
    assert report.stored, report.format()


def test_the_transactional_export_holds_every_signing_in_order(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = screened_subject(session, zm001)
        sign(session, zm001, subject)
        factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: {"SEX": "F"}}})  # breaks it
        again = sign(session, zm001, subject)
        form = sign(session, zm001, subject, IE)
        export = tmp_path / "transactional.xml"
        write_odm_transactional(session, zm001, export)
        later = tmp_path / "later.xml"
        write_odm_transactional(
            session, zm001, later, ExportScope(study_id=zm001.id, changed_since=again.signed_at)
        )
    document = etree.parse(str(export))
    schema = etree.XMLSchema(file=str(ODM_SCHEMA))
    assert schema.validate(document), schema.error_log
    defs = document.findall(".//odm:SignatureDef", NS)
    assert defs[0].get("OID") == "SD.CASEBOOK"
    signings = [
        (
            element.getparent().tag.split("}")[1],  # type: ignore[union-attr]
            element.find("odm:SignatureRef", NS).get("SignatureOID"),  # type: ignore[union-attr]
            element.findtext("odm:DateTimeStamp", namespaces=NS),
        )
        for element in document.iterfind(".//odm:Signature", NS)
    ]
    stamp = [s.signed_at.isoformat(timespec="seconds") for s in (again, form)]
    assert signings[0][:2] == ("SubjectData", "SD.CASEBOOK")  # the first, broken since
    assert signings[1:] == [
        ("SubjectData", "SD.CASEBOOK", stamp[0]),
        ("FormData", "SD.F.IE", stamp[1]),
    ]
    for signature in document.iterfind(".//odm:Signature", NS):
        assert signature.getparent().get("TransactionType") == "Context"  # type: ignore[union-attr]
    assert len(etree.parse(str(later)).findall(".//odm:Signature", NS)) == 1  # the form's only

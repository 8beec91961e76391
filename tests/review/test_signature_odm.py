"""Signatures in the ODM 1.3.2 snapshot: the casebook's and a form's signature in force are
native Signature elements (UserRef, LocationRef, SignatureRef, DateTimeStamp) in SubjectData
and FormData, each SignatureDef is in AdminData, a broken signature is not exported, and the
file is schema-valid and imports into an empty database (both databases)."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session

from app.exporters.odm_clinical import write_odm_snapshot
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

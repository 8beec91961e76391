"""ODM 1.3.2 exports of the demo study: every kind (snapshot of the study, a site, a dose cohort,
a subject, incremental; transactional) validates against the schema, and a reader finds in them
what the casebook holds: form and subject status, dose level, visit dates, forms not done with
their reason, and every change with who made it and why."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf import reads
from app.crf.changes import FormRef
from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_common import name_parts
from app.exporters.odm_transactional import write_odm_transactional
from app.exporters.scope import ExportScope, ScopeKind
from app.models import StudyEventData, Subject, UserAccount, utcnow
from app.schemas import odm_schema, validate_streaming
from app.study.loader import Study
from tests import factories
from tests.conftest import ODM_SCHEMA, REPO, LiveServer, logged_in_client
from tests.test_web import complete_consent, register, save

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
NOT_DONE_REASON = "echo machine unavailable"
CHANGE_REASON = "transcription error"


@dataclass(frozen=True)
class Demo:
    """The demo study plus what the tests did to it."""

    engine: Engine
    not_done_subject: Subject
    """Registered at site 01, F.ECHO at screening marked not done."""
    empty_subject: Subject
    """Registered at site 01, nothing entered."""
    changed_subject: Subject
    """An enrolled demo subject at site 01 whose race was changed to WHITE after `since`."""
    cleared_subject: Subject
    """Another one whose race was cleared (form back in progress) before `since`."""
    old_race: str
    since: datetime


@pytest.fixture(scope="module")
def demo(module_database_url: str, zm001: Study) -> Iterator[Demo]:
    engine = make_engine(module_database_url)
    load_demo(engine, zm001, subjects=len(SCENARIOS))
    with Session(engine, expire_on_commit=False) as session:

        def new_subject() -> Subject:
            return factories.register(session, zm001)

        def change_race(subject: Subject, race: str | None, *, complete: bool) -> str:
            """Save the subject's demographics with another race; returns the former one."""
            ref = FormRef("SE.SCR", 1, "F.DM", 1)
            stored = reads.load_form(session, subject, zm001.form("F.DM"), ref)
            assert stored is not None
            old = stored.rows["IG.DM"][1]["RACE"]
            assert old is not None
            rows = {"IG.DM": {1: {**stored.rows["IG.DM"][1], "RACE": race}}}
            outcome = factories.save(
                session, zm001, subject, "F.DM", rows, complete=complete, reason=CHANGE_REASON
            )
            assert outcome.saved and outcome.changed, outcome.evaluation.errors
            return old

        not_done, empty = new_subject(), new_subject()
        factories.not_done(session, zm001, not_done, "F.ECHO", NOT_DONE_REASON)
        enrolled = session.exec(
            select(Subject)
            .where(Subject.site_id == 1, col(Subject.dose_level).is_not(None))
            .order_by(col(Subject.subject_key))
        ).all()
        changed, cleared = enrolled[0], enrolled[1]
        ic = reads.load_form(session, cleared, zm001.form("F.IC"), FormRef("SE.SCR", 1, "F.IC", 1))
        assert ic is not None and ic.rows["IG.IC"][1]["ICOPT"] is not None
        outcome = factories.save(
            session, zm001, cleared, "F.IC", {"IG.IC": {1: {**ic.rows["IG.IC"][1], "ICOPT": None}}},
            reason=CHANGE_REASON,
        )  # fmt: skip
        assert outcome.saved, outcome.evaluation.errors
        since = utcnow()
        old_race = change_race(changed, "WHITE", complete=True)
    yield Demo(engine, not_done, empty, changed, cleared, old_race, since)
    engine.dispose()


def export(demo: Demo, study: Study, path: Path, scope: ExportScope, kind: str) -> etree._Element:
    """Write one export, validate it as a stream, and return the parsed document."""
    writer = write_odm_transactional if kind == "transactional" else write_odm_snapshot
    with Session(demo.engine) as session:
        writer(session, study, path, scope)
    assert validate_streaming(path, odm_schema()) > 0
    return etree.parse(str(path)).getroot()


def subject_keys(document: etree._Element) -> list[str]:
    return [str(s.get("SubjectKey")) for s in document.iterfind(".//odm:SubjectData", NS)]


def subjects_where(demo: Demo, *conditions: object) -> list[str]:
    with Session(demo.engine) as session:
        statement = select(Subject.subject_key).where(*conditions)  # type: ignore[arg-type]
        return list(session.exec(statement.order_by(col(Subject.subject_key))))


SCOPES = {
    "study": ExportScope(study_id=1),
    "site": ExportScope(ScopeKind.SITE, study_id=1, site_id=2),
    "cohort": ExportScope(ScopeKind.COHORT, study_id=1, dose_level="DL2", phase="ESCALATION"),
}


@pytest.mark.parametrize("kind", ["snapshot", "transactional"])
@pytest.mark.parametrize("scope_name", ["study", "site", "cohort", "subject", "incremental"])
def test_every_kind_of_export_validates_and_holds_the_subjects_in_scope(
    demo: Demo, zm001: Study, tmp_path: Path, kind: str, scope_name: str
) -> None:
    scopes = {
        **SCOPES,
        "subject": ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=demo.changed_subject.id),
        "incremental": ExportScope(study_id=1, changed_since=demo.since),
    }
    document = export(demo, zm001, tmp_path / "odm.xml", scopes[scope_name], kind)
    assert document.get("FileType") == kind.capitalize()
    expected = {
        "study": subjects_where(demo),
        "site": subjects_where(demo, Subject.site_id == 2),
        "cohort": subjects_where(demo, Subject.dose_level == "DL2", Subject.phase == "ESCALATION"),
        "subject": [demo.changed_subject.subject_key],
        "incremental": [demo.changed_subject.subject_key],
    }[scope_name]
    assert expected, "the demo has subjects in every scope"
    assert sorted(set(subject_keys(document))) == expected
    if scope_name == "site":
        assert all(key.startswith("02-") for key in expected)
        # A site's export names only that site, and only users of its audit trail.
        admin = document.find("odm:AdminData", NS)
        assert admin is not None
        assert [loc.get("OID") for loc in admin.iterfind("odm:Location", NS)] == ["SITE.02"]
        users = {user.get("OID") for user in admin.iterfind("odm:User", NS)}
        referenced = {ref.get("UserOID") for ref in document.iterfind(".//odm:UserRef", NS)}
        assert referenced <= users and "USR.SYSTEM" in users
        with Session(demo.engine) as session:
            coordinator = session.exec(
                select(UserAccount).where(UserAccount.username == "coordinator")
            ).one()
        assert f"USR.{coordinator.id}" not in users  # site 01's coordinator


def test_every_user_of_admin_data_has_a_first_and_a_last_name(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    """Other EDCs (OpenEDC) need FirstName and LastName; Chinese names are family first."""
    document = export(demo, zm001, tmp_path / "odm.xml", SCOPES["study"], "snapshot")
    names = {
        user.findtext("odm:LoginName", namespaces=NS): (
            user.findtext("odm:FullName", namespaces=NS),
            user.findtext("odm:FirstName", namespaces=NS),
            user.findtext("odm:LastName", namespaces=NS),
        )
        for user in document.iterfind("odm:AdminData/odm:User", NS)
    }
    assert names["datamanager"] == ("Liu Yang", "Yang", "Liu")
    assert names[None] == ("TrialDesk (system)", "TrialDesk", "System")
    assert all(first and last for _full, first, last in names.values())


def test_items_of_a_form_not_done_are_null_with_the_reason(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    scope = ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=demo.not_done_subject.id)
    document = export(demo, zm001, tmp_path / "odm.xml", scope, "snapshot")
    form = document.find(".//odm:FormData[@FormOID='F.ECHO']", NS)
    assert form is not None
    assert form.findtext("odm:Annotation/odm:Comment", namespaces=NS) == NOT_DONE_REASON
    assert form.findtext("odm:Annotation/odm:Flag/odm:FlagValue", namespaces=NS) == "not_done"
    assert form.find("odm:AuditRecord/odm:ReasonForChange", NS).text == NOT_DONE_REASON  # type: ignore[union-attr]
    items = form.findall(".//odm:ItemData", NS)
    defined = [item.oid for group in zm001.form("F.ECHO").item_groups for item in group.items]
    assert [item.get("ItemOID") for item in items] == defined
    for item in items:
        assert item.get("IsNull") == "Yes" and item.get("Value") is None
        assert item.findtext("odm:Annotation/odm:Comment", namespaces=NS) == NOT_DONE_REASON


def test_subject_status_dose_level_and_visit_dates_are_flags_of_defined_code_lists(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    document = export(demo, zm001, tmp_path / "odm.xml", ExportScope(study_id=1), "snapshot")
    with Session(demo.engine) as session:
        enrolled = session.exec(
            select(Subject).where(col(Subject.dose_level).is_not(None)).order_by(col(Subject.id))
        ).first()
        assert enrolled is not None and enrolled.status_date is not None
        visit = session.exec(
            select(StudyEventData).where(
                StudyEventData.subject_id == enrolled.id, StudyEventData.event_oid == "SE.SCR"
            )
        ).one()
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{enrolled.subject_key}']", NS)
    assert subject is not None
    flags = {
        flag.findtext("odm:FlagType", namespaces=NS): flag.findtext("odm:FlagValue", namespaces=NS)
        for flag in subject.iterfind("odm:Annotation/odm:Flag", NS)
    }
    assert flags == {
        "SUBJECTSTATUS": enrolled.status,
        "DOSELEVEL": enrolled.dose_level,
        "PHASE": enrolled.phase,
    }
    status_comment = subject.findtext("odm:Annotation[1]/odm:Comment", namespaces=NS)
    assert status_comment == enrolled.status_date.isoformat()
    screening = subject.find("odm:StudyEventData[@StudyEventOID='SE.SCR']", NS)
    assert screening is not None and visit.visit_date is not None
    assert screening.findtext("odm:Annotation/odm:Comment", namespaces=NS) == str(visit.visit_date)
    form_status = subject.find(".//odm:FormData[@FormOID='F.IC']/odm:Annotation/odm:Flag", NS)
    assert form_status is not None
    assert form_status.findtext("odm:FlagValue", namespaces=NS) == "complete"

    codes = {
        codelist.get("OID"): {item.get("CodedValue") for item in codelist}
        for codelist in document.iterfind(".//odm:MetaDataVersion/odm:CodeList", NS)
    }
    written = document.findall(".//odm:ClinicalData//odm:Flag/*", NS)
    assert {value.get("CodeListOID") for value in written} >= {
        "CL.SUBJECTSTATUS", "CL.DOSELEVEL", "CL.PHASE", "CL.FORMSTATUS", "CL.VISITSTATUS",
        "CL.FLAGTYPE",
    }  # fmt: skip
    for value in written:
        assert value.text in codes[value.get("CodeListOID")], etree.tostring(value)


def test_a_subject_without_data_appears_with_its_site_and_status(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    document = export(demo, zm001, tmp_path / "odm.xml", ExportScope(study_id=1), "snapshot")
    key = demo.empty_subject.subject_key
    subject = document.find(f".//odm:SubjectData[@SubjectKey='{key}']", NS)
    assert subject is not None
    assert subject.find("odm:SiteRef", NS).get("LocationOID") == "SITE.01"  # type: ignore[union-attr]
    assert subject.findtext("odm:Annotation/odm:Flag/odm:FlagValue", namespaces=NS) == "screening"
    assert subject.find("odm:StudyEventData", NS) is None


def test_transactional_export_lists_each_change_in_order_with_who_and_why(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    scope = ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=demo.changed_subject.id)
    document = export(demo, zm001, tmp_path / "odm.xml", scope, "transactional")
    first = document.find(".//odm:SubjectData", NS)
    assert first is not None and first.get("TransactionType") == "Insert"
    assert first.find("odm:SiteRef", NS) is not None
    race = document.findall(".//odm:ItemData[@ItemOID='IT.DM.RACE']", NS)
    assert [(i.get("TransactionType"), i.get("Value")) for i in race] == [
        ("Insert", demo.old_race),
        ("Update", "WHITE"),
    ]
    update = race[-1].find("odm:AuditRecord", NS)
    assert update is not None
    assert update.findtext("odm:ReasonForChange", namespaces=NS) == CHANGE_REASON
    stamp = datetime.fromisoformat(update.findtext("odm:DateTimeStamp", namespaces=NS) or "")
    assert stamp.utcoffset() == timedelta(0) and stamp > demo.since - timedelta(seconds=1)
    user = update.find("odm:UserRef", NS).get("UserOID")  # type: ignore[union-attr]
    login = document.findtext(f".//odm:User[@OID='{user}']/odm:LoginName", namespaces=NS)
    assert login == "coordinator"
    assert update.find("odm:LocationRef", NS).get("LocationOID") == "SITE.01"  # type: ignore[union-attr]
    assert race[-1].getparent().get("TransactionType") == "Context"  # type: ignore[union-attr]
    with Session(demo.engine) as session:
        subject = session.get(Subject, demo.changed_subject.id)
    assert subject is not None and subject.status_date is not None
    updates = document.findall(".//odm:SubjectData[@TransactionType='Update']", NS)
    flags = [
        {v.get("CodeListOID"): v.text for v in update.iterfind(".//odm:FlagValue", NS)}
        for update in updates
    ]
    assert flags[0] == {
        "CL.SUBJECTSTATUS": "enrolled",
        "CL.DOSELEVEL": subject.dose_level,
        "CL.PHASE": subject.phase,
    }
    assert flags[-1] == {"CL.SUBJECTSTATUS": subject.status}
    last_date = updates[-1].findtext("odm:Annotation/odm:Comment", namespaces=NS)
    assert last_date == subject.status_date.isoformat()
    assert document.find(".//odm:FormData[@TransactionType='Insert']", NS) is not None


def test_a_cleared_value_is_removed_in_the_history_and_absent_from_the_snapshot(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    scope = ExportScope(ScopeKind.SUBJECT, study_id=1, subject_id=demo.cleared_subject.id)
    history = export(demo, zm001, tmp_path / "transactional.xml", scope, "transactional")
    optional = history.findall(".//odm:ItemData[@ItemOID='IT.IC.ICOPT']", NS)
    assert [(i.get("TransactionType"), i.get("Value") is None) for i in optional] == [
        ("Insert", False),
        ("Remove", True),
    ]
    assert optional[-1].findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == (
        CHANGE_REASON
    )
    snapshot = export(demo, zm001, tmp_path / "snapshot.xml", scope, "snapshot")
    form = snapshot.find(".//odm:FormData[@FormOID='F.IC']", NS)
    assert form is not None
    # A complete form stays complete when an optional answer is cleared.
    assert form.findtext("odm:Annotation/odm:Flag/odm:FlagValue", namespaces=NS) == "complete"
    assert form.find(".//odm:ItemData[@ItemOID='IT.IC.ICOPT']", NS) is None
    assert form.find(".//odm:ItemData[@ItemOID='IT.IC.ICDAT']", NS) is not None


def test_incremental_exports_hold_only_what_changed_since_the_moment(
    demo: Demo, zm001: Study, tmp_path: Path
) -> None:
    scope = ExportScope(study_id=1, changed_since=demo.since)
    snapshot = export(demo, zm001, tmp_path / "snapshot.xml", scope, "snapshot")
    items = snapshot.findall(".//odm:ItemData", NS)
    assert [(i.get("ItemOID"), i.get("Value")) for i in items] == [("IT.DM.RACE", "WHITE")]
    assert items[0].findtext("odm:AuditRecord/odm:ReasonForChange", namespaces=NS) == CHANGE_REASON
    assert [f.get("FormOID") for f in snapshot.iterfind(".//odm:FormData", NS)] == ["F.DM"]
    transactional = export(demo, zm001, tmp_path / "transactional.xml", scope, "transactional")
    changes = transactional.findall(".//odm:ItemData", NS)
    assert [(i.get("TransactionType"), i.get("Value")) for i in changes] == [("Update", "WHITE")]


def test_progress_counts_the_subjects_in_scope(demo: Demo, zm001: Study, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    scope = SCOPES["site"]
    with Session(demo.engine) as session:
        counts = write_odm_snapshot(
            session, zm001, tmp_path / "odm.xml", scope, lambda *a: calls.append(a)
        )
    total = len(subjects_where(demo, Subject.site_id == 2))
    assert calls == [(done, total) for done in range(1, total + 1)]
    assert counts.subjects == total and counts.items > 0


def test_exported_odm_of_entered_data_is_valid_and_carries_the_audit_trail(
    live_server: LiveServer, tmp_path: Path
) -> None:
    client = logged_in_client(live_server, "coordinator")
    subject = register(client)
    complete_consent(client, subject, "2026-03-10")
    save(
        client,
        subject,
        "F.DM",
        {"IG.DM:1:BRTHDAT": "1980-03-11", "IG.DM:1:SEX": "F", "IG.DM:1:CHILDPOT": "Y"},
        version=0,
    )
    save(
        client,
        subject,
        "F.DM",
        {
            "IG.DM:1:BRTHDAT": "1980-03-11",
            "IG.DM:1:SEX": "F",
            "IG.DM:1:CHILDPOT": "N",
            "IG.DM:1:NCBPRSN": "HYSTERECTOMY",
        },
        version=1,
    )
    output = tmp_path / "zm001.xml"
    env = {
        **os.environ,
        "TRIALDESK_DATABASE_URL": live_server.settings.database_url,
        "TRIALDESK_STUDY_DIR": str(REPO / "forms"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "app", "export", "odm", "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(output) in result.stdout

    schema = etree.XMLSchema(file=str(ODM_SCHEMA))
    document = etree.parse(str(output))
    assert schema.validate(document), schema.error_log
    subject_data = document.find(".//odm:SubjectData", NS)
    assert subject_data is not None and subject_data.get("SubjectKey") == "01-001"
    age = document.find(".//odm:ItemData[@ItemOID='IT.DM.AGE']", NS)
    assert age is not None and age.get("Value") == "45"
    childpot = document.find(".//odm:ItemData[@ItemOID='IT.DM.CHILDPOT']", NS)
    assert childpot is not None and childpot.get("Value") == "N"
    audit_record = childpot.find("odm:AuditRecord", NS)
    assert audit_record is not None
    user = audit_record.find("odm:UserRef", NS).get("UserOID")  # type: ignore[union-attr]
    name = document.find(f".//odm:User[@OID='{user}']/odm:LoginName", NS)
    assert name is not None and name.text == "coordinator"
    assert audit_record.find("odm:LocationRef", NS).get("LocationOID") == "SITE.01"  # type: ignore[union-attr]
    status = document.find(".//odm:FormData[@FormOID='F.IC']//odm:FlagValue", NS)
    assert status is not None and status.text == "complete"
    assert document.find(".//odm:MetaDataVersion/odm:FormDef[@OID='F.AE']", NS) is not None


def test_an_account_without_name_parts_is_split_at_its_last_space() -> None:
    def account(full_name: str) -> UserAccount:
        return UserAccount(username="someone", full_name=full_name, password_hash="-")

    assert name_parts(account("Maria de la Cruz")) == ("Maria de la", "Cruz")
    assert name_parts(account("Madonna")) == ("Madonna", "Madonna")

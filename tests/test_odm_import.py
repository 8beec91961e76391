"""ODM import: an export imported into an empty database exports the same ClinicalData; a file
with broken values is refused item by item and changes nothing; another study's file is
refused; the command line and the import page give the same report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from app import audit, auth
from app.access import load_access
from app.db import make_engine
from app.demo import SCENARIOS, load_demo
from app.exporters.odm_clinical import write_odm_snapshot
from app.exporters.odm_metadata import metadata_version_oid
from app.exporters.odm_transactional import write_odm_transactional
from app.importers.odm_import import ImportProblem, ImportReport, import_odm
from app.main import MAX_BODY_BYTES
from app.models import (
    AuditRecord,
    FormData,
    ItemData,
    Role,
    Site,
    Subject,
    UserAccount,
    pk,
)
from app.review.query_reads import QUERY_ACTIONS
from app.schemas import odm_schema, validate_streaming
from app.study.loader import Study
from tests import factories
from tests.conftest import REPO, LiveServer, csrf_token, logged_in_client, prepare_database

ODM = "{http://www.cdisc.org/ns/odm/v1.3}"
DATA = Path(__file__).parent / "data"
CLINICAL_TABLES = (
    "subject",
    "study_event_data",
    "form_data",
    "item_group_data",
    "item_data",
    "audit_record",
)


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory, zm001: Study) -> Path:
    return build_demo_export(tmp_path_factory.mktemp("source"), zm001)


def build_demo_export(folder: Path, study: Study) -> Path:
    """The snapshot export of the 20-subject demo, built in `folder` on SQLite."""
    url = f"sqlite:///{folder / 'demo.db'}"
    prepare_database(url)
    engine = make_engine(url)
    load_demo(engine, study, subjects=len(SCENARIOS))
    path = folder / "zm001-snapshot.xml"
    with Session(engine) as session:
        write_odm_snapshot(session, study, path)
    engine.dispose()
    return path


def run_import(
    engine: Engine,
    study: Study,
    path: Path,
    *,
    username: str = "datamanager",
    valid_subjects_only: bool = False,
) -> ImportReport:
    with Session(engine) as session:
        user = session.exec(select(UserAccount).where(UserAccount.username == username)).one()
        access = load_access(session, user, study.id)
        actor = audit.Actor(user, "test")
    return import_odm(
        engine, study, path, access=access, actor=actor, valid_subjects_only=valid_subjects_only
    )


def clinical_data(path: Path, element_path: str = "odm:ClinicalData") -> bytes:
    """ClinicalData (or another element) canonicalised for comparison: AuditRecords removed
    (they record who entered a value and when; after an import that is the import itself), and
    Signatures and the board decisions (the import does not restore them),
    whitespace between elements dropped, everything outside ClinicalData left out (FileOID,
    CreationDateTime, and AdminData whose Locations carry the sites' creation dates)."""
    document = etree.parse(str(path), etree.XMLParser(remove_blank_text=True))
    element = document.find(element_path, {"odm": ODM[1:-1]})
    assert element is not None
    # Signatures are not restored: a signature attests data in the system it was made in;
    # nor is the safety board's log, ClinicalData's own Signatures and Annotations.
    board = [*element.iterchildren(f"{ODM}Signatures", f"{ODM}Annotations")]
    for record in [*board, *element.iter(f"{ODM}AuditRecord", f"{ODM}Signature")]:
        parent = record.getparent()
        assert parent is not None
        parent.remove(record)
    # Queries and freezes are restored, but with new numbers, the import's own check runs
    # opening system queries first: tests/review/test_review_odm_roundtrip.py compares them.
    review = {"CL.QUERYSTATE", "CL.LOCKSTATE"}
    for annotation in list(element.iter(f"{ODM}Annotation")):
        codes = {v.get("CodeListOID") for v in annotation.iter(f"{ODM}FlagValue")}
        if codes & review:
            parent = annotation.getparent()
            assert parent is not None
            parent.remove(annotation)
    for parent in element.iter():  # renumber what is left, as an export numbers it
        for seq, annotation in enumerate(parent.iterchildren(f"{ODM}Annotation"), start=1):
            annotation.set("SeqNum", str(seq))
    return etree.tostring(element, method="c14n")


def row_counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        counts = {
            table: session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in CLINICAL_TABLES
        }
        counters = session.exec(select(Site.oid, Site.next_subject_number)).all()
    return {**counts, **{f"{oid} next number": number for oid, number in counters}}


def test_an_export_imported_into_an_empty_database_exports_the_same_clinical_data(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    report = run_import(demo_engine, zm001, demo_export)

    assert report.stored and report.problems == [], report.format()
    assert (report.subjects, report.warnings) == (len(SCENARIOS), [])
    summary = f"zm001-snapshot.xml: imported {len(SCENARIOS)} subjects, {report.forms}"
    assert report.format().startswith(summary)
    again = tmp_path / "again.xml"
    with Session(demo_engine) as session:
        write_odm_snapshot(session, zm001, again)
    assert clinical_data(again) == clinical_data(demo_export)
    with Session(demo_engine) as session:
        sources = session.exec(
            select(AuditRecord.source, AuditRecord.username, func.count())
            .where(col(AuditRecord.subject_id).is_not(None))
            .where(col(AuditRecord.action).not_in(QUERY_ACTIONS))  # the checks' own, by the system
            .group_by(col(AuditRecord.source), col(AuditRecord.username))
        ).all()
        assert sources == [("import:zm001-snapshot.xml", "datamanager", sources[0][2])]
        assert sources[0][2] > report.items
        status_change = session.exec(
            select(AuditRecord).where(
                AuditRecord.subject_key == "01-001", AuditRecord.action == "subject_status"
            )
        ).one()
        subject = session.exec(select(Subject).where(Subject.subject_key == "01-001")).one()
        assert (status_change.old_value, status_change.new_value) == ("screening", subject.status)
        assert status_change.context == {
            "effective": str(subject.status_date), "dose_level": subject.dose_level,
            "phase": subject.phase,
        }  # fmt: skip
        # The site's screening numbers continue after the imported keys.
        site = session.exec(select(Site).where(Site.oid == "SITE.01")).one()
        imported = session.exec(select(Subject.id).where(Subject.site_id == site.id)).all()
        registered = factories.register(session, zm001, site_id=pk(site))
        assert registered.subject_key == f"01-{len(imported) + 1:03d}"


def test_forms_in_progress_and_not_done_keep_their_status_and_reason(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    prepare_database(url)
    source = make_engine(url)
    load_demo(source, zm001, subjects=0)
    with Session(source, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: {"SEX": "F"}}})
        factories.not_done(
            session, zm001, subject, "F.PGA", "patient too tired for the global assessment"
        )
        exported = tmp_path / "source.xml"
        write_odm_snapshot(session, zm001, exported)
    source.dispose()

    report = run_import(demo_engine, zm001, exported)

    assert report.stored, report.format()
    again = tmp_path / "again.xml"
    with Session(demo_engine) as session:
        write_odm_snapshot(session, zm001, again)
        statuses = session.exec(
            select(FormData.form_oid, FormData.status, FormData.not_done_reason).order_by(
                col(FormData.form_oid)
            )
        ).all()
    assert statuses == [
        ("F.DM", "in_progress", None),
        ("F.PGA", "not_done", "patient too tired for the global assessment"),
    ]
    assert clinical_data(again) == clinical_data(exported)


def broken_file(source: Path, target: Path) -> Path:
    """Two subjects of the export, pretty-printed like another tool's file: 01-001 with text in
    an integer, 30 February, a code not in its list, an unknown ItemOID and an unknown FormOID;
    01-002 as exported."""
    document = etree.parse(str(source), etree.XMLParser(remove_blank_text=True))
    clinical = document.find(f"{ODM}ClinicalData")
    assert clinical is not None
    for subject in clinical.findall(f"{ODM}SubjectData"):
        if subject.get("SubjectKey") not in ("01-001", "01-002"):
            clinical.remove(subject)
    first = clinical.find(f"{ODM}SubjectData[@SubjectKey='01-001']")
    assert first is not None
    screening = first.find(f"{ODM}StudyEventData[@StudyEventOID='SE.SCR']")
    assert screening is not None

    def item(form: str, item_oid: str) -> etree._Element:
        found = screening.find(
            f"{ODM}FormData[@FormOID='{form}']//{ODM}ItemData[@ItemOID='{item_oid}']"
        )
        assert found is not None
        return found

    item("F.VS", "IT.VS.SYSBP").set("Value", "high")
    item("F.DM", "IT.DM.BRTHDAT").set("Value", "2026-02-30")
    item("F.DM", "IT.DM.SEX").set("Value", "X")
    group = item("F.DM", "IT.DM.SEX").getparent()
    assert group is not None
    etree.SubElement(group, f"{ODM}ItemData", ItemOID="IT.DM.SHOESIZE", Value="38")
    unknown = etree.SubElement(screening, f"{ODM}FormData", FormOID="F.SHOES")
    etree.SubElement(
        etree.SubElement(unknown, f"{ODM}ItemGroupData", ItemGroupOID="IG.SHOES"),
        f"{ODM}ItemData", ItemOID="IT.SHOES.SIZE", Value="38",
    )  # fmt: skip
    document.write(str(target), pretty_print=True, xml_declaration=True, encoding="UTF-8")
    return target


def line_of(path: Path, fragment: str) -> int:
    """The 1-based line of the file's only line that contains `fragment`."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if fragment in line]
    assert len(lines) == 1, (fragment, lines)
    return lines[0]


def test_a_file_with_broken_values_is_refused_item_by_item_and_changes_nothing(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    path = broken_file(demo_export, tmp_path / "broken.xml")
    before = row_counts(demo_engine)

    report = run_import(demo_engine, zm001, path)

    assert not report.stored and report.subjects == 0
    scr = "01-001/SE.SCR"
    assert sorted(report.problems, key=lambda p: p.line or 0) == sorted(
        [
            ImportProblem(line_of(path, '"IT.DM.BRTHDAT" Value="2026-02-30"'),
                          f"{scr}/F.DM/IG.DM/IT.DM.BRTHDAT", "2026-02-30 is not a real calendar date",
                          "01-001"),
            ImportProblem(line_of(path, '"IT.DM.SEX" Value="X"'), f"{scr}/F.DM/IG.DM/IT.DM.SEX",
                          "'X' is not one of the allowed answers", "01-001"),
            ImportProblem(line_of(path, "IT.DM.SHOESIZE"), f"{scr}/F.DM/IG.DM/IT.DM.SHOESIZE",
                          "unknown ItemOID IT.DM.SHOESIZE in IG.DM", "01-001"),
            ImportProblem(line_of(path, '"IT.VS.SYSBP" Value="high"'),
                          f"{scr}/F.VS/IG.VS.VSMEAS[1]/IT.VS.SYSBP", "'high' is not a whole number: type digits only, e.g. 42 (a minus "
                              "sign for a negative number)",
                          "01-001"),
            ImportProblem(line_of(path, 'FormOID="F.SHOES"'), f"{scr}/F.SHOES",
                          "unknown FormOID F.SHOES", "01-001"),
        ],
        key=lambda p: p.line or 0,
    )  # fmt: skip
    text_report = report.format()
    assert text_report.startswith("broken.xml: refused, nothing was stored (5 problem(s)).")
    sex_line = line_of(path, '"IT.DM.SEX" Value="X"')
    assert (
        f"  line {sex_line}: {scr}/F.DM/IG.DM/IT.DM.SEX: 'X' is not one of the allowed answers"
        in text_report.splitlines()
    )
    assert row_counts(demo_engine) == before


def one_subject(source: Path, target: Path, changes: dict[tuple[str, str], str | None]) -> Path:
    """Subject 01-002 of the export with some screening values changed ((form, item) -> value;
    an item absent from the form is added to its first item group)."""
    document = etree.parse(str(source), etree.XMLParser(remove_blank_text=True))
    clinical = document.find(f"{ODM}ClinicalData")
    assert clinical is not None
    for subject in clinical.findall(f"{ODM}SubjectData"):
        if subject.get("SubjectKey") != "01-002":
            clinical.remove(subject)
    for (form_oid, item_oid), value in changes.items():
        form = clinical.find(
            f".//{ODM}StudyEventData[@StudyEventOID='SE.SCR']/{ODM}FormData[@FormOID='{form_oid}']"
        )
        assert form is not None
        item = form.find(f".//{ODM}ItemData[@ItemOID='{item_oid}']")
        if item is None:
            group = form.find(f"{ODM}ItemGroupData")
            assert group is not None
            item = etree.SubElement(group, f"{ODM}ItemData", ItemOID=item_oid)
        item.set("Value", value or "")
    document.write(str(target), pretty_print=True, xml_declaration=True, encoding="UTF-8")
    return target


def test_hard_ranges_partial_dates_and_show_if_refuse_values_like_data_entry(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    path = one_subject(demo_export, tmp_path / "checks.xml", {
        ("F.IC", "IT.IC.ICDAT"): "2025-11",
        ("F.VS", "IT.VS.SYSBP"): "999",
        ("F.DM", "IT.DM.NCBPRSN"): "HYSTERECTOMY",  # asked only when CHILDPOT is N; it is Y
    })  # fmt: skip

    report = run_import(demo_engine, zm001, path)

    assert not report.stored
    assert [(p.line, p.path, p.message) for p in report.problems] == [
        (line_of(path, 'Value="2025-11"'), "01-002/SE.SCR/F.IC/IG.IC/IT.IC.ICDAT",
         "must be a complete date (YYYY-MM-DD); a partial date is not allowed"),
        (line_of(path, 'ItemOID="IT.DM.NCBPRSN" Value='), "01-002/SE.SCR/F.DM/IG.DM/IT.DM.NCBPRSN",
         "has the value 'HYSTERECTOMY' but does not apply here (its show-if condition is false)"),
        (line_of(path, 'Value="999"'), "01-002/SE.SCR/F.VS/IG.VS.VSMEAS[1]/IT.VS.SYSBP",
         "999 is outside the allowed range (50 to 260)"),
    ]  # fmt: skip


def test_a_derived_value_that_differs_is_a_warning_and_trialdesk_derives_it(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    exported = etree.parse(str(demo_export))
    item = exported.find(
        ".//odm:SubjectData[@SubjectKey='01-002']//odm:ItemData[@ItemOID='IT.DM.AGE']",
        {"odm": ODM[1:-1]},
    )
    assert item is not None
    age = str(item.get("Value"))
    wrong = str(int(age) - 1)
    path = one_subject(demo_export, tmp_path / "age.xml", {("F.DM", "IT.DM.AGE"): wrong})

    report = run_import(demo_engine, zm001, path)

    assert report.stored and report.problems == []
    line = line_of(path, f'ItemOID="IT.DM.AGE" Value="{wrong}"')
    assert [str(w) for w in report.warnings] == [
        f"line {line}: 01-002/SE.SCR/F.DM/IG.DM/IT.DM.AGE: the file's derived "
        f"value '{wrong}' differs from TrialDesk's '{age}'; TrialDesk's is stored"
    ]
    with Session(demo_engine) as session:
        ages = session.exec(select(ItemData.value).where(ItemData.item_oid == "IT.DM.AGE")).all()
    assert ages == [age]


def test_valid_subjects_only_stores_the_subjects_without_problems(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    path = broken_file(demo_export, tmp_path / "broken.xml")

    report = run_import(demo_engine, zm001, path, valid_subjects_only=True)

    assert report.stored and report.subjects == 1 and len(report.problems) == 5
    assert report.skipped_subjects == ["01-001"]
    assert "Left out 1 subject(s) with problems: 01-001" in report.format()
    with Session(demo_engine) as session:
        assert session.exec(select(Subject.subject_key)).all() == ["01-002"]
    again = tmp_path / "again.xml"
    with Session(demo_engine) as session:
        write_odm_snapshot(session, zm001, again)
    subject = "odm:ClinicalData/odm:SubjectData[@SubjectKey='01-002']"
    assert clinical_data(again, subject) == clinical_data(path, subject)


def test_a_subject_already_in_the_database_or_at_an_unknown_site_is_refused(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    path = broken_file(demo_export, tmp_path / "broken.xml")
    text_ = path.read_text().replace(
        'SiteRef LocationOID="SITE.01"', 'SiteRef LocationOID="SITE.77"', 1
    )
    elsewhere = tmp_path / "elsewhere.xml"
    elsewhere.write_text(text_)
    first = run_import(demo_engine, zm001, elsewhere, valid_subjects_only=True)
    assert first.skipped_subjects == ["01-001"] and first.subjects == 1
    assert first.problems[0].message == (
        "site SITE.77 is not a TrialDesk site (an administrator adds sites first)"
    )

    again = run_import(demo_engine, zm001, elsewhere)

    assert not again.stored
    assert [str(p).split(": ", 1)[1] for p in again.problems] == [
        "01-001: site SITE.77 is not a TrialDesk site (an administrator adds sites first)",
        "01-002: a subject with this SubjectKey is already in TrialDesk",
    ]


def test_another_studys_file_is_refused_with_its_study_oid(
    demo_engine: Engine, zm001: Study
) -> None:
    before = row_counts(demo_engine)

    report = run_import(demo_engine, zm001, DATA / "odmlib_test_clinical_data_01.xml")

    assert not report.stored
    assert [str(p) for p in report.problems] == [
        "line 2: ClinicalData: study OID P2006-101 is not ZM001: the file holds another "
        "study's data"
    ] * 2
    assert row_counts(demo_engine) == before


def test_another_metadata_version_is_a_warning_and_a_transactional_file_adds_no_subject(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    text_ = broken_file(demo_export, tmp_path / "broken.xml").read_text()
    older = tmp_path / "older.xml"
    older.write_text(text_.replace(metadata_version_oid(zm001), "MDV.ZM001.OLDER"))
    transactional = tmp_path / "history.xml"
    transactional.write_text(text_.replace('FileType="Snapshot"', 'FileType="Transactional"'))

    report = run_import(demo_engine, zm001, older, valid_subjects_only=True)
    refused = run_import(demo_engine, zm001, transactional)

    assert report.stored and report.subjects == 1
    assert [str(w) for w in report.warnings] == [
        f"line {line_of(older, '<ClinicalData')}: ClinicalData: MetaDataVersionOID "
        f"MDV.ZM001.OLDER is not {metadata_version_oid(zm001)}, the ZM001 definition this "
        "server runs; values are checked against it"
    ]
    # Its values are not replayed; the subjects not already here are each a problem.
    assert not refused.stored and refused.problems
    assert {p.subject_key for p in refused.problems}.isdisjoint(report.stored_subjects)
    assert all(
        p.message.startswith("not in TrialDesk: a Transactional file restores only the queries")
        for p in refused.problems
    )


def test_a_file_that_is_not_valid_odm_is_refused_with_the_line_of_the_error(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    path = tmp_path / "invalid.xml"
    path.write_text(
        (DATA / "odmlib_test_clinical_data_01.xml").read_text().replace("><", ">\n<")
        .replace('ItemOID="SEX" Value="F"', 'ItemOID="SEX" Valu="F"')
    )  # fmt: skip

    report = run_import(demo_engine, zm001, path)

    assert [str(p) for p in report.problems] == [
        f"line {line_of(path, 'Valu=')}: not valid ODM 1.3.2: Element 'ItemData', attribute "
        "'Valu': The attribute 'Valu' is not allowed."
    ]


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRIALDESK_DATABASE_URL": database_url,
        "TRIALDESK_STUDY_DIR": str(REPO / "forms"),
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "import", "odm", *args],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_line_exits_1_with_the_report_and_imports_as_the_named_user(
    demo_engine: Engine, database_url: str, demo_export: Path, tmp_path: Path
) -> None:
    path = broken_file(demo_export, tmp_path / "broken.xml")

    refused = cli(str(path), "--as", "datamanager", database_url=database_url)
    assert refused.returncode == 1
    assert "broken.xml: refused, nothing was stored (5 problem(s))." in refused.stderr
    assert "F.VS/IG.VS.VSMEAS[1]/IT.VS.SYSBP: 'high' is not a whole number" in refused.stderr

    not_allowed = cli(str(path), "--as", "coordinator", database_url=database_url)
    assert not_allowed.returncode == 1
    assert "coordinator: your roles do not allow: import" in not_allowed.stderr

    partial = cli(str(path), "--as", "admin", "--valid-subjects-only", database_url=database_url)
    assert partial.returncode == 0, partial.stderr
    assert partial.stdout.startswith("broken.xml: imported 1 subjects")
    with Session(demo_engine) as session:
        who = session.exec(
            select(AuditRecord.username, AuditRecord.source).where(
                AuditRecord.action == "subject_create"
            )
        ).all()
    assert who == [("admin", "import:broken.xml")]


def finished_job_page(client: httpx.Client, path: str, timeout: float = 240) -> httpx.Response:
    """The job page at `path` once the job has finished (polled as the page's htmx does)."""
    deadline = time.monotonic() + timeout
    while True:
        part = client.get(path, headers={"hx-request": "true"})
        assert part.status_code == 200, part.text
        if 'data-state="queued"' not in part.text and 'data-state="running"' not in part.text:
            return client.get(path)
        assert time.monotonic() < deadline, part.text
        time.sleep(0.2)


def test_the_import_page_uploads_a_file_and_shows_the_report(
    live_server: LiveServer, demo_export: Path, tmp_path: Path
) -> None:
    path = broken_file(demo_export, tmp_path / "broken.xml")
    manager = logged_in_client(live_server, "datamanager")
    token = csrf_token(manager, "/admin/import")

    def upload(file: Path = path, **form: str) -> str:
        response = manager.post(
            "/admin/import",
            headers={"x-csrftoken": token},  # as htmx sends it (see app.web.import_pages)
            data=form,
            files={"file": ("site 01 export.xml", file.read_bytes(), "application/xml")},
        )
        assert response.status_code == 303, response.text
        page = finished_job_page(manager, response.headers["location"])
        return f"{page.status_code} {page.text}"

    refused = upload()
    assert refused.startswith("422 ")
    assert "Refused, nothing was stored: 5 problem(s)." in refused
    assert "01-001/SE.SCR/F.SHOES" in refused and "unknown FormOID F.SHOES" in refused

    stored = upload(valid_subjects_only="true")
    assert stored.startswith("200 ")
    assert (
        "Imported 1 subjects" in stored and "Left out 1 subject(s) with problems: 01-001" in stored
    )
    with Session(live_server.app.fastapi.state.engine) as session:
        sources = set(
            session.exec(select(AuditRecord.source).where(col(AuditRecord.subject_id).is_not(None)))
        )
    assert sources == {"import:site_01_export.xml"}
    assert logged_in_client(live_server, "monitor").get("/admin/import").status_code == 403

    assert demo_export.stat().st_size > MAX_BODY_BYTES  # other routes refuse this size
    rest = upload(demo_export, valid_subjects_only="true")
    assert rest.startswith("200 ") and f"Imported {len(SCENARIOS) - 1} subjects" in rest
    assert "Left out 1 subject(s) with problems: 01-002" in rest
    assert "a subject with this SubjectKey is already in TrialDesk" in rest


def test_a_data_manager_of_one_site_imports_only_into_that_site(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    path = one_subject(demo_export, tmp_path / "site01.xml", {})
    with Session(demo_engine) as session:
        site2 = session.exec(select(Site).where(Site.oid == "SITE.02")).one()
        auth.create_user(
            session, username="dm02", full_name="Data Manager 02", password="Site02-data-2026",
            roles=[(Role.DATA_MANAGER, zm001.id, site2.id)], actor=audit.Actor(None, "test"),
        )  # fmt: skip
        session.commit()
    before = row_counts(demo_engine)

    report = run_import(demo_engine, zm001, path, username="dm02")

    assert not report.stored
    assert [p.message for p in report.problems] == [
        "site SITE.01 is not a TrialDesk site (an administrator adds sites first)"
    ]
    assert row_counts(demo_engine) == before


def _flags_outside_their_code_lists(path: Path) -> list[tuple[str, str]]:
    """(code list, value) of every FlagValue of the file not among its code list's codes."""
    document = etree.parse(str(path))
    codes = {
        str(codelist.get("OID")): {str(item.get("CodedValue")) for item in codelist}
        for codelist in document.iter(f"{ODM}CodeList")
    }
    return [
        (str(flag.get("CodeListOID")), flag.text or "")
        for flag in document.iter(f"{ODM}FlagValue")
        if (flag.text or "") not in codes.get(str(flag.get("CodeListOID")), set())
    ]


def test_a_transactional_export_of_imported_data_flags_only_codes_of_their_lists(
    demo_engine: Engine, zm001: Study, demo_export: Path, tmp_path: Path
) -> None:
    """Screen failures have no dose level or phase: their history says nothing of them (not
    "-"); a status imported without its effective date keeps its dose level and phase."""
    undated = tmp_path / "undated.xml"
    document = etree.parse(str(demo_export), etree.XMLParser(remove_blank_text=True))
    for annotation in document.iter(f"{ODM}Annotation"):
        flag = annotation.find(f"{ODM}Flag/{ODM}FlagValue")
        comment = annotation.find(f"{ODM}Comment")
        if (
            flag is not None
            and flag.get("CodeListOID") == "CL.SUBJECTSTATUS"
            and comment is not None
        ):
            annotation.remove(comment)
    document.write(str(undated), xml_declaration=True, encoding="UTF-8")
    report = run_import(demo_engine, zm001, undated)
    assert report.stored, report.format()

    history = tmp_path / "history.xml"
    with Session(demo_engine) as session:
        write_odm_transactional(session, zm001, history)
        enrolled = session.exec(select(Subject).where(col(Subject.dose_level).is_not(None))).first()
        failed = session.exec(select(Subject).where(Subject.status == "screen_failed")).first()
    assert enrolled is not None and failed is not None
    assert validate_streaming(history, odm_schema()) > 0
    assert _flags_outside_their_code_lists(history) == []
    root = etree.parse(str(history)).getroot()

    def status_flags(subject: Subject) -> list[dict[str, str | None]]:
        updates = root.iterfind(
            f".//{ODM}SubjectData[@SubjectKey='{subject.subject_key}'][@TransactionType='Update']"
        )
        return [
            {str(f.get("CodeListOID")): f.text for f in update.iter(f"{ODM}FlagValue")}
            for update in updates
        ]

    assert status_flags(enrolled) == [{
        "CL.SUBJECTSTATUS": enrolled.status, "CL.DOSELEVEL": enrolled.dose_level,
        "CL.PHASE": enrolled.phase,
    }]  # fmt: skip
    assert status_flags(failed) == [{"CL.SUBJECTSTATUS": "screen_failed"}]

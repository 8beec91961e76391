"""Definition versions as data: each released definition is stored as MDV.<study>.<n>; a
changed definition over a study holding data is refused until previewed and applied; a form
keeps the version it was entered under; a value of an item a later version removed is still
shown and exported. On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from lxml import etree, html
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app import audit
from app.cli import cli
from app.config import Settings, StudyFolders
from app.db import unit_of_work
from app.exporters.odm_clinical import write_odm_snapshot
from app.main import create_app
from app.models import AuditRecord, FormData, ItemData, StudyVersion, utcnow
from app.schemas import odm_schema, validate_streaming
from app.studies import DefinitionChanged, apply_upgrade, upgrade_preview
from app.study.loader import Study, load_study
from tests import factories
from tests.conftest import EXPORTS, FORMS, InProcessServer, logged_in_client

NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
OPTIONAL = """      - oid: IT.IC.ICOPT
        name: ICOPT
        label: Consent to optional samples / genetic research
        type: choice
        codelist: CL.NYNA
"""
CONSENT = {"ICVER": "2.0", "ICDAT": "2026-01-05", "ICLTFU": "Y", "ICOPT": "Y"}


def changed_definition(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of forms/ with `old` replaced by `new` in IC.yaml."""
    folder = tmp_path / "forms"
    shutil.copytree(FORMS, folder)
    path = folder / "ecrf" / "IC.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return folder


def settings_for(url: str, forms: Path) -> Settings:
    return Settings(
        environment="test", database_url=url, secret_key="t" * 32,
        studies=(StudyFolders(forms=forms, exports=EXPORTS),),
    )  # fmt: skip


def test_a_comment_or_layout_change_is_not_a_new_version(tmp_path: Path, zm001: Study) -> None:
    folder = changed_definition(
        tmp_path,
        "      - oid: IT.IC.ICOPT\n",
        "      # optional consent\n      - oid: IT.IC.ICOPT\n",
    )
    assert load_study(folder).digest == zm001.digest
    renamed = changed_definition(
        tmp_path / "other", "label: Consent to optional", "label: Agrees to optional"
    )
    assert load_study(renamed).digest != zm001.digest


def test_a_removed_item_keeps_its_values_shown_and_exported_after_an_upgrade(
    demo_engine: Engine, database_url: str, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        assert factories.save(session, zm001, subject, "F.IC", {"IG.IC": {1: CONSENT}}).saved
    folder = changed_definition(tmp_path, OPTIONAL, "")
    changed = replace(load_study(folder), sdtm_dir=EXPORTS)

    with pytest.raises(DefinitionChanged, match=r"differs from MDV\.ZM001\.1"):
        create_app(settings_for(database_url, folder), [changed])
    with Session(demo_engine) as session:
        preview = upgrade_preview(session, changed)
    assert (preview.current, preview.proposed) == ("MDV.ZM001.1", "MDV.ZM001.2")
    (form,) = preview.forms
    assert (form.form_oid, form.change, form.stored_forms) == ("F.IC", "changed", 1)
    (item,) = form.items
    assert (item.item_oid, item.change, item.stored_values) == ("IT.IC.ICOPT", "removed", 1)
    assert "kept as entered" in item.consequence
    assert "IT.IC.ICOPT" in preview.format()

    with Session(demo_engine) as session, unit_of_work(session):
        admin = factories.author(session, "admin").actor
        released = apply_upgrade(session, changed, actor=admin, now=utcnow())
    assert released.mdv_oid == "MDV.ZM001.2"
    with Session(demo_engine) as session:
        versions = session.exec(select(StudyVersion.oid).order_by(StudyVersion.number)).all()
        assert versions == ["MDV.ZM001.1", "MDV.ZM001.2"]
        record = session.exec(
            select(AuditRecord).where(AuditRecord.action == audit.AuditAction.STUDY_RELEASE)
            .where(AuditRecord.new_value == "MDV.ZM001.2")
        ).one()  # fmt: skip
        assert (record.old_value, record.username) == ("MDV.ZM001.1", "admin")
        form_version = session.exec(select(FormData.definition_version)).one()
        assert form_version == "MDV.ZM001.1"  # kept until the form is saved again

    with InProcessServer(database_url, changed, forms=folder) as server:
        bound = server.app.fastapi.state.studies.by_oid["ZM001"]
        assert bound.mdv_oid == "MDV.ZM001.2"
        assert [i.oid for i in bound.retired.items["IG.IC"]] == ["IT.IC.ICOPT"]
        page = logged_in_client(server, "coordinator").get(
            f"/subjects/{subject.id}/events/SE.SCR/1/forms/F.IC/1"
        )
        retired = html.fromstring(page.text).find_class("retired")
        assert retired and "not in the current definition" in retired[0].text_content()
        assert "Consent to optional samples / genetic research" in retired[0].text_content()
        with Session(demo_engine, expire_on_commit=False) as session:
            again = {k: v for k, v in CONSENT.items() if k != "ICOPT"} | {"ICDAT": "2026-01-06"}
            assert factories.save(session, bound, subject, "F.IC", {"IG.IC": {1: again}}).saved
            assert session.exec(select(FormData.definition_version)).one() == "MDV.ZM001.2"
            values = session.exec(select(ItemData.value).where(ItemData.item_oid == "IT.IC.ICOPT"))
            assert values.all() == ["Y"]  # never silently dropped
            path = tmp_path / "snapshot.xml"
            write_odm_snapshot(session, bound, path)
    assert validate_streaming(path, odm_schema()) > 0
    document = etree.parse(str(path))
    item_def = document.find(
        ".//odm:MetaDataVersion[@OID='MDV.ZM001.2']/odm:ItemDef[@OID='IT.IC.ICOPT']", NS
    )
    assert item_def is not None
    assert "Not in the current definition" in "".join(item_def.itertext())
    value = document.find(".//odm:ItemData[@ItemOID='IT.IC.ICOPT']", NS)
    assert value is not None and value.get("Value") == "Y"


def test_a_changed_definition_over_a_study_without_data_is_released_at_start(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    folder = changed_definition(tmp_path, "label: Consent to optional", "label: Agrees to optional")
    app = create_app(settings_for(database_url, folder))
    assert app.fastapi.state.studies.by_oid["ZM001"].mdv_oid == "MDV.ZM001.2"


def test_the_command_line_previews_and_applies_an_upgrade(
    demo_engine: Engine, database_url: str, zm001: Study, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with Session(demo_engine) as session:
        factories.register(session, zm001)
    folder = changed_definition(tmp_path, OPTIONAL, "")
    monkeypatch.setenv("TRIALDESK_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIALDESK_STUDIES", f'[{{"forms": "{folder}", "exports": "{EXPORTS}"}}]')
    get_settings_cache_clear()
    runner = CliRunner()
    refused = runner.invoke(cli, ["export", "odm", "-o", str(tmp_path / "x.xml")])
    assert refused.exit_code == 1 and "trialdesk study upgrade --preview" in refused.output
    preview = runner.invoke(cli, ["study", "upgrade", "--preview"])
    assert preview.exit_code == 0, preview.output
    assert "MDV.ZM001.1 -> MDV.ZM001.2" in preview.output and "IT.IC.ICOPT" in preview.output
    applied = runner.invoke(cli, ["study", "upgrade", "--apply"])
    assert applied.exit_code == 0 and "ZM001 runs as MDV.ZM001.2" in applied.output
    exported = runner.invoke(cli, ["export", "odm", "-o", str(tmp_path / "x.xml")])
    assert exported.exit_code == 0, exported.output
    get_settings_cache_clear()


def get_settings_cache_clear() -> None:
    from app.config import get_settings

    get_settings.cache_clear()


def test_values_of_a_form_a_later_version_removed_are_shown_on_the_casebook(
    demo_engine: Engine, database_url: str, zm001: Study, tmp_path: Path
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        chest = {"CHESTDAT": "2026-01-06", "CHESTMOD": "CT", "CHESTRES": "NORMAL"}
        assert factories.save(session, zm001, subject, "F.CHEST", {"IG.CHEST": {1: chest}}).saved
        skipped = factories.register(session, zm001)
        assert factories.not_done(session, zm001, skipped, "F.CHEST", "Not required").saved
    folder = tmp_path / "forms"
    shutil.copytree(FORMS, folder)
    (folder / "ecrf" / "CHEST.yaml").unlink()
    consent_checks = folder / "checks" / "IC.yaml"  # EC001 reads the chest imaging date
    consent_checks.write_text(consent_checks.read_text().replace(" CHEST.CHESTDAT,", ""))
    schedule = folder / "schedule.yaml"
    schedule.write_text(schedule.read_text().replace("      - F.CHEST\n", "", 1))
    changed = replace(load_study(folder), sdtm_dir=EXPORTS)
    with Session(demo_engine) as session:
        (form,) = upgrade_preview(session, changed).forms
        assert (form.form_oid, form.stored_forms) == ("F.CHEST", 2)
    with Session(demo_engine) as session, unit_of_work(session):
        apply_upgrade(
            session, changed, actor=factories.author(session, "admin").actor, now=utcnow()
        )

    with InProcessServer(database_url, changed, forms=folder) as server:
        page = logged_in_client(server, "monitor").get(f"/subjects/{subject.id}")
        bound = server.app.fastapi.state.studies.by_oid["ZM001"]
    (section,) = html.fromstring(page.text).find_class("retired")
    rows = [[" ".join(td.text_content().split()) for td in tr] for tr in section.iter("tr")][1:]
    assert rows == [
        ["Screening", "F.CHEST", "IG.CHEST #1", item, value, "MDV.ZM001.1"]
        for item, value in [
            ("IT.CHEST.CHESTDAT", "2026-01-06"),
            ("IT.CHEST.CHESTMOD", "CT"),
            ("IT.CHEST.CHESTRES", "NORMAL"),
        ]
    ]

    path = tmp_path / "snapshot.xml"
    with Session(demo_engine) as session:
        write_odm_snapshot(session, bound, path)
    assert validate_streaming(path, odm_schema()) > 0
    document = etree.parse(str(path))
    mdv = document.find(".//odm:MetaDataVersion[@OID='MDV.ZM001.2']", NS)
    assert mdv is not None
    screening = mdv.find("odm:StudyEventDef[@OID='SE.SCR']", NS)
    assert screening is not None
    refs = screening.findall("odm:FormRef[@FormOID='F.CHEST']", NS)
    assert [ref.get("Mandatory") for ref in refs] == ["No"]
    form_def = mdv.find("odm:FormDef[@OID='F.CHEST']", NS)
    assert form_def is not None and "Not in the current definition" in "".join(form_def.itertext())
    assert [r.get("ItemGroupOID") for r in form_def.findall("odm:ItemGroupRef", NS)] == ["IG.CHEST"]
    group_def = mdv.find("odm:ItemGroupDef[@OID='IG.CHEST']", NS)
    assert group_def is not None and group_def.get("Domain") == "PR"
    item_oids = [ref.get("ItemOID") for ref in group_def.findall("odm:ItemRef", NS)]
    for oid in item_oids:
        assert mdv.find(f"odm:ItemDef[@OID='{oid}']", NS) is not None, oid
    entered = f".//odm:SubjectData[@SubjectKey='{subject.subject_key}']"
    exported = {
        data.get("ItemOID"): data.get("Value")
        for data in document.findall(
            f"{entered}//odm:FormData[@FormOID='F.CHEST']/odm:ItemGroupData/odm:ItemData", NS
        )
    }
    assert exported == {f"IT.CHEST.{name}": value for name, value in chest.items()}
    not_done = document.findall(
        f".//odm:SubjectData[@SubjectKey='{skipped.subject_key}']"
        "//odm:FormData[@FormOID='F.CHEST']/odm:ItemGroupData/odm:ItemData", NS
    )  # fmt: skip
    assert [(d.get("ItemOID"), d.get("IsNull")) for d in not_done] == [
        (oid, "Yes") for oid in item_oids
    ]

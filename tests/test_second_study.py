"""A second, small study beside ZM001 in one instance (issue 8 §3): HT201, a 12-week
hypertension study in tests/studies/HT201 with other visits and anchors, one arm and no dose
levels. It is only a folder of definitions and mappings: it loads, serves, enters, exports
(ODM and SDTM, valid against the schemas) and imports with no code of its own. A user with
roles in both studies chooses one after login; subject keys are unique per study, so the first
subject of site 01 is 01-001 in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import lxml.html
import pyreadstat
import pytest
from jsonschema import Draft201909Validator
from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session

from app import admin, audit, auth
from app.access import load_access
from app.config import StudyFolders
from app.db import make_engine, unit_of_work
from app.demo import DEMO_PASSWORD, load_demo
from app.models import Role, pk, utcnow
from app.schemas import define_schema, odm_schema
from app.studies import bind_studies
from app.study.loader import Study, load_study
from tests import factories
from tests.conftest import (
    EXPORTS,
    FORMS,
    REPO,
    LiveServer,
    csrf_token,
    logged_in_client,
    migrated_database,
)

HT201 = REPO / "tests" / "studies" / "HT201"
HT201_FOLDERS = StudyFolders(forms=HT201 / "forms", exports=HT201 / "exports")
DATASET_JSON_SCHEMA = REPO / "app" / "schemas" / "dataset-json-1.1" / "dataset.schema.json"
ODM_NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3"}
TODAY = date.today()
CONSENT = TODAY - timedelta(days=40)
FIRST_DOSE = TODAY - timedelta(days=30)


@pytest.fixture(scope="module")
def ht201() -> Study:
    return replace(load_study(HT201_FOLDERS.forms), sdtm_dir=HT201_FOLDERS.exports)


@dataclass(frozen=True)
class Instance:
    """A database serving ZM001 (with its demo accounts) and HT201 with two sites: the demo
    coordinator and investigator also work at HT201 site 01, the data manager study-wide;
    `htcoord2` is coordinator at HT201 site 02 only."""

    url: str
    engine: Engine
    zm001: Study
    ht201: Study
    site_ids: dict[str, int]


def add_ht201(engine: Engine, url: str, zm001: Study, ht201: Study) -> Instance:
    """Bind HT201 beside ZM001 and give it sites and roles, as an administrator would."""
    registry = bind_studies(engine, [zm001, ht201], now=utcnow())
    bound = registry.by_oid["HT201"]
    with Session(engine) as session, unit_of_work(session):
        access = load_access(session, factories.user(session, "admin"), bound.id)
        sites = {
            number: admin.create_site(
                session, access=access, number=number, name=name, time_zone="Europe/Berlin"
            )
            for number, name in (("01", "Charité Berlin (test)"), ("02", "LMU Munich (test)"))
        }
        grants = [
            ("coordinator", Role.COORDINATOR, sites["01"].id),
            ("investigator", Role.INVESTIGATOR, sites["01"].id),
            ("datamanager", Role.DATA_MANAGER, None),
        ]
        for username, role, site_id in grants:
            user_id = pk(factories.user(session, username))
            admin.grant_role(session, access=access, user_id=user_id, role=role, site_id=site_id)
        auth.create_user(
            session, username="htcoord2", full_name="Anna Weber", password=DEMO_PASSWORD,
            roles=[(Role.COORDINATOR, bound.id, sites["02"].id)], actor=audit.Actor(None, "test"),
        )  # fmt: skip
        site_ids = {number: pk(site) for number, site in sites.items()}
    return Instance(url, engine, zm001, bound, site_ids)


@pytest.fixture
def instance(demo_engine: Engine, database_url: str, zm001: Study, ht201: Study) -> Instance:
    return add_ht201(demo_engine, database_url, zm001, ht201)


@pytest.fixture
def server(instance: Instance) -> Iterator[LiveServer]:
    with LiveServer(
        instance.url, instance.zm001, others=((instance.ht201, HT201_FOLDERS),)
    ) as server:
        yield server


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """`trialdesk ARGS` over the database at `url`, serving both studies from their folders."""
    folders = [
        {"forms": str(FORMS), "exports": str(EXPORTS)},
        {"forms": str(HT201_FOLDERS.forms), "exports": str(HT201_FOLDERS.exports)},
    ]
    env = {"TRIALDESK_DATABASE_URL": url, "TRIALDESK_STUDIES": json.dumps(folders)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True,
        env={**os.environ, **env}, cwd=REPO, check=False, timeout=180,
    )  # fmt: skip


def api(server: LiveServer, instance: Instance, username: str) -> httpx.Client:
    """An API client of `username` (a personal token) with HT201's paths as its base."""
    with Session(instance.engine) as session:
        token = factories.api_token(session, username)
    return httpx.Client(
        base_url=f"{server.url}/api/v1/studies/HT201",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_ht201_passes_the_study_check_on_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "study", "check", str(HT201_FOLDERS.forms),
         "--exports", str(HT201_FOLDERS.exports)],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HT201: OK" in result.stdout and "9 SDTM domains" in result.stdout


def test_a_user_of_both_studies_chooses_one_and_sees_only_its_subjects(
    instance: Instance, server: LiveServer
) -> None:
    with Session(instance.engine, expire_on_commit=False) as session:
        theirs = factories.register(session, instance.zm001)
        ours = factories.register(session, instance.ht201, site_id=instance.site_ids["01"])
        other_site = factories.register(
            session, instance.ht201, site_id=instance.site_ids["02"], by="htcoord2"
        )
    assert theirs.subject_key == ours.subject_key == "01-001" and theirs.id != ours.id
    assert other_site.subject_key == "02-001"

    browser = logged_in_client(server, "coordinator")
    assert browser.get("/").headers["location"] == "/studies"
    choices = lxml.html.fromstring(browser.get("/studies").text)
    rows = [
        [" ".join(td.text_content().split()) for td in tr] for tr in choices.xpath("//tbody/tr")
    ]
    assert [row[:3] for row in rows] == [
        ["ZM001", "ZM001 in refractory SLE", "MDV.ZM001.1"],
        ["HT201", "HT201 in essential hypertension", "MDV.HT201.1"],
    ]
    assert [row[3] for row in rows] == ["Work in ZM001", "Work in HT201"]
    token = csrf_token(browser, "/studies")
    chosen = browser.post("/studies/HT201", data={"csrftoken": token})
    assert chosen.status_code == 303
    subjects = lxml.html.fromstring(browser.get("/subjects").text)
    links = {link.get("href") for link in subjects.xpath("//main//a[@href]")}
    assert f"/subjects/{ours.id}" in links
    assert f"/subjects/{theirs.id}" not in links and f"/subjects/{other_site.id}" not in links
    assert browser.get(f"/subjects/{theirs.id}").status_code == 404  # ZM001's, not this study's
    casebook = lxml.html.fromstring(browser.get(f"/subjects/{ours.id}").text)
    visits = [
        " ".join(h2.text_content().split())
        for h2 in casebook.xpath("//section[contains(@class, 'visit ')]/h2")
    ]
    assert visits[:4] == ["Screening", "Day 1", "Week 4", "Week 12"]
    assert "Adverse Events" in casebook.text_content()

    site2 = api(server, instance, "htcoord2")
    assert [s["subject_key"] for s in site2.get("/subjects").json()] == ["02-001"]
    assert site2.get(f"/subjects/{ours.id}").status_code == 404
    zm001_only = api(server, instance, "coordinator2")
    assert zm001_only.get("/subjects").status_code == 404


def enter_a_subject(client: httpx.Client, investigator: httpx.Client, site_id: int) -> int:
    """Register a subject at HT201 `site_id` and enter screening, day 1, an AE and enrolment
    through the API, as a site would; the subject's id."""
    created = client.post("/subjects", json={"site_id": site_id})
    assert created.status_code == 201, created.text
    subject = int(created.json()["id"])

    def put(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.put(f"/subjects/{subject}/{path}", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def form(event: str, form_oid: str, group: str, rows: dict[int, dict[str, Any]]) -> None:
        values = {group: {str(row): items for row, items in rows.items()}}
        put(f"events/{event}/1/forms/{form_oid}/1", {"version": 0, "values": values,
                                                     "complete": True})  # fmt: skip

    put("events/SE.SCR/1", {"visit_date": CONSENT.isoformat()})
    form("SE.SCR", "F.IC", "IG.IC", {1: {"ICDAT": CONSENT.isoformat(), "ICVER": "2.0"}})
    form("SE.SCR", "F.DM", "IG.DM", {1: {"BRTHDAT": "1968-03-09", "SEX": "F"}})
    form("SE.SCR", "F.VS", "IG.VS", {1: {"VSPOS": "SITTING", "SYSBP": "152", "DIABP": "94"}})
    enrolled = investigator.post(
        f"/subjects/{subject}/status", json={"to": "enrolled", "effective": CONSENT.isoformat()}
    )
    assert enrolled.status_code == 200, enrolled.text
    put("events/SE.DAY1/1", {"visit_date": FIRST_DOSE.isoformat()})
    form("SE.DAY1", "F.EX", "IG.EX", {1: {"EXSTDAT": FIRST_DOSE.isoformat(), "EXDOSE": "5.0"}})
    form("SE.DAY1", "F.VS", "IG.VS", {1: {"VSPOS": "SITTING", "SYSBP": "141", "DIABP": "88"}})
    onset = (FIRST_DOSE + timedelta(days=3)).isoformat()
    ae = {"AETERM": "Ankle oedema", "AESTDAT": onset, "AESEV": "MILD", "AESER": "N"}
    form("SE.LOG", "F.AE", "IG.AE", {1: ae})
    return subject


def clinical_values(odm: Path) -> dict[tuple[str, ...], str]:
    """(subject, event, form, group, repeat, item) -> value of every ItemData of an ODM file."""
    tree = etree.parse(str(odm))
    values = {}
    for item in tree.iterfind(".//odm:ItemData", ODM_NS):
        group = item.getparent()
        form = group.getparent() if group is not None else None
        event = form.getparent() if form is not None else None
        subject = event.getparent() if event is not None else None
        assert group is not None and form is not None and event is not None and subject is not None
        key = (
            subject.get("SubjectKey", ""), event.get("StudyEventOID", ""),
            form.get("FormOID", ""), group.get("ItemGroupOID", ""),
            group.get("ItemGroupRepeatKey", "1"), item.get("ItemOID", ""),
        )  # fmt: skip
        values[key] = item.get("Value", "")
    return values


def test_ht201_is_entered_exported_as_valid_odm_and_sdtm_and_imported_elsewhere(
    instance: Instance, server: LiveServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with Session(instance.engine) as session:
        factories.register(session, instance.zm001)  # ZM001's 01-001 stays out of HT201's files
    coordinator = api(server, instance, "coordinator")
    investigator = api(server, instance, "investigator")
    subject = enter_a_subject(coordinator, investigator, instance.site_ids["01"])
    casebook = coordinator.get(f"/subjects/{subject}").json()
    assert casebook["subject_key"] == "01-001" and casebook["status"] == "enrolled"
    vs = coordinator.get(f"/subjects/{subject}/events/SE.SCR/1/forms/F.VS/1").json()
    assert '"MAP": "113.3"' in json.dumps(vs)  # (152 + 2 x 94) / 3 to one decimal
    dm = coordinator.get(f"/subjects/{subject}/events/SE.SCR/1/forms/F.DM/1").json()
    age = CONSENT.year - 1968 - ((CONSENT.month, CONSENT.day) < (3, 9))
    assert f'"{age}"' in json.dumps(dm)

    odm = tmp_path / "ht201.xml"
    exported = cli("export", "odm", "-o", str(odm), "--study", "HT201", url=instance.url)
    assert exported.returncode == 0, exported.stderr
    document = etree.parse(str(odm))
    assert odm_schema().validate(document), odm_schema().error_log
    (clinical,) = document.iterfind("odm:ClinicalData", ODM_NS)
    assert (clinical.get("StudyOID"), clinical.get("MetaDataVersionOID")) == (
        "HT201",
        "MDV.HT201.1",
    )
    assert document.find(".//odm:CodeList[@OID='CL.DOSELEVEL']", ODM_NS) is None  # none to list
    values = clinical_values(odm)
    assert {key[0] for key in values} == {"01-001"}
    assert values[("01-001", "SE.SCR", "F.VS", "IG.VS", "1", "IT.VS.MAP")] == "113.3"
    assert values[("01-001", "SE.DAY1", "F.EX", "IG.EX", "1", "IT.EX.EXDOSE")] == "5.0"

    sdtm = tmp_path / "sdtm"
    result = cli(
        "export", "sdtm", "-o", str(sdtm), "--study", "HT201", "--format", "xpt", "--format",
        "json", url=instance.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert define_schema().validate(etree.parse(str(sdtm / "define.xml"))), (
        define_schema().error_log
    )
    validator = Draft201909Validator(json.loads(DATASET_JSON_SCHEMA.read_text()))
    written = sorted(path.stem for path in sdtm.glob("*.json"))
    assert written == ["ae", "dm", "ds", "ex", "se", "sv", "ts", "tv", "vs"]
    for name in written:
        content = json.loads((sdtm / f"{name}.json").read_text(encoding="utf-8"))
        assert [error.message for error in validator.iter_errors(content)] == [], name
    ts = json.loads((sdtm / "ts.json").read_text(encoding="utf-8"))["rows"]
    assert [row[5] for row in ts if row[3] == "SSTDTC"] == [CONSENT.isoformat()]  # TSVAL
    dm_rows, _ = pyreadstat.read_xport(str(sdtm / "dm.xpt"))
    (row,) = dm_rows.to_dict("records")
    assert row["USUBJID"] == "HT201-01-001" and row["AGE"] == age
    assert (row["ARMCD"], row["ACTARMCD"], row["ARM"]) == (
        "AML5",
        "AML5",
        "Amlodipine 5 mg once daily",
    )
    assert row["RFSTDTC"] == FIRST_DOSE.isoformat() and row["ARMNRS"] == ""
    vs_rows, _ = pyreadstat.read_xport(str(sdtm / "vs.xpt"))
    by_test = {(r["VISIT"], r["VSTESTCD"]): r for r in vs_rows.to_dict("records")}
    assert by_test[("Screening", "MAP")]["VSORRES"] == "113.3"
    assert by_test[("Screening", "SYSBP")]["VSDY"] == -10
    assert (
        by_test[("Day 1", "SYSBP")]["VSDY"] == 1
        and by_test[("Day 1", "SYSBP")]["EPOCH"] == "TREATMENT"
    )
    se_rows, _ = pyreadstat.read_xport(str(sdtm / "se.xpt"))
    assert [(r["ETCD"], r["EPOCH"]) for r in se_rows.to_dict("records")] == [
        ("SCRN", "SCREENING"),
        ("AML5", "TREATMENT"),
    ]
    assert se_rows.to_dict("records")[1]["SESTDTC"] == FIRST_DOSE.isoformat()
    ae_rows, _ = pyreadstat.read_xport(str(sdtm / "ae.xpt"))
    assert [(r["AETERM"], r["AESTDY"]) for r in ae_rows.to_dict("records")] == [("Ankle oedema", 4)]

    backend = request.node.callspec.params["database_url"]
    with migrated_database(backend, tmp_path / "other") as other_url:
        other_engine = make_engine(other_url)
        try:
            load_demo(other_engine, instance.zm001, subjects=0)
            other = add_ht201(other_engine, other_url, instance.zm001, instance.ht201)
            imported = cli(
                "import", "odm", str(odm), "--as", "datamanager", "--study", "HT201", url=other.url
            )
            assert imported.returncode == 0, imported.stdout + imported.stderr
            again = tmp_path / "again.xml"
            assert (
                cli("export", "odm", "-o", str(again), "--study", "HT201", url=other.url).returncode
                == 0
            )
        finally:
            other_engine.dispose()
    assert clinical_values(again) == values

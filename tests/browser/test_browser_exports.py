"""A sponsor in headless Chromium starts an SDTM export of one dose cohort, watches its
progress, downloads the zip and finds in it the cohort's datasets and a truthful manifest."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pyreadstat
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.demo import DEMO_PASSWORD, load_demo
from app.models import Subject
from app.study.loader import Study
from tests.conftest import ARTIFACTS, LiveServer
from tests.test_exports import check_manifest

pytestmark = pytest.mark.browser


@pytest.fixture
def sponsor_server(engine: Engine, database_url: str, zm001: Study) -> Iterator[LiveServer]:
    load_demo(engine, zm001, subjects=12)
    with LiveServer(database_url, zm001) as server:
        yield server


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sponsor_exports_a_cohort_as_sdtm_and_opens_the_zip(
    sponsor_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(sponsor_server.url + "/")
    page.get_by_label("Username").fill("sponsor")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Exports").click()
    expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()

    page.get_by_label("SDTM datasets with Define-XML 2.1").check()
    page.get_by_label("Dose cohort", exact=True).select_option("DL2:ESCALATION")
    page.locator("input[name=scope][value=cohort]").check()
    page.get_by_role("button", name="Start export").click()

    job = page.locator("tr.export-job").first
    expect(job).to_contain_text("cohort DL2 ESCALATION")
    # The row shows a progress bar while the job runs, then the download link.
    if job.get_attribute("data-state") in ("queued", "running"):
        expect(job.get_by_role("progressbar")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "export-running.png"), full_page=True)
    download_link = job.get_by_role("link", name="Download")
    expect(download_link).to_be_visible(timeout=60_000)
    page.locator("tr.export-manifest").first.locator("summary").click()
    page.screenshot(path=str(ARTIFACTS / "export-done.png"), full_page=True)

    with page.expect_download() as info:
        download_link.click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.name.endswith(".zip")

    with zipfile.ZipFile(path) as archive:
        files = check_manifest(archive)
        names = {f["name"] for f in files}
        assert {"dm.xpt", "dm.json", "dm.csv", "ae.xpt", "lb.xpt", "define.xml"} <= names
        archive.extractall(tmp_path / "zip")
        manifest = json.loads(archive.read("manifest.json"))
    dm, _meta = pyreadstat.read_xport(str(tmp_path / "zip" / "dm.xpt"))
    engine = sponsor_server.app.fastapi.state.engine
    with Session(engine) as session:
        cohort = set(
            session.exec(
                select(Subject.subject_key).where(
                    Subject.dose_level == "DL2", Subject.phase == "ESCALATION"
                )
            )
        )
    assert cohort and set(dm["SUBJID"]) == cohort
    assert set(dm["ARMCD"]) == {"DL2-ESC"}
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    assert rows["dm.xpt"] == len(dm) == len(cohort)

"""A data manager imports an ODM file in headless Chromium: one subject is stored, the same
file again is refused with the reason in a table."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from tests.conftest import LiveServer
from tests.test_odm_import import build_demo_export, one_subject

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory: pytest.TempPathFactory, zm001: Study) -> Path:
    """The snapshot export of the 20-subject demo (built once, on SQLite)."""
    return build_demo_export(tmp_path_factory.mktemp("source"), zm001)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_data_manager_imports_a_file_in_the_browser(
    live_server: LiveServer, browser: Browser, demo_export: Path, tmp_path: Path
) -> None:
    path = one_subject(demo_export, tmp_path / "subject 01-002.xml", {})
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill("datamanager")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live_server.url + "/admin/import")

    page.get_by_label("ODM file").set_input_files(str(path))
    page.get_by_role("button", name="Import").click()
    # The job page: a subject's forms each pass their edit checks twice (the check pass, then
    # the store pass), seconds on a busy machine.
    expect(page.get_by_role("status")).to_contain_text("Imported 1 subjects", timeout=60_000)
    page.goto(live_server.url + "/admin/import")
    page.get_by_label("ODM file").set_input_files(str(path))
    page.get_by_role("button", name="Import").click()

    expect(page.get_by_role("alert")).to_have_text("Refused, nothing was stored: 1 problem(s).")
    expect(
        page.get_by_role("cell", name="a subject with this SubjectKey is already in TrialDesk")
    ).to_be_visible()
    context.close()

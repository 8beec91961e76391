"""Issue 9 acceptance in headless Chromium: a coordinator saves a CRS episode whose
investigator grade differs from the derived one; a query opens next to the item; the
coordinator answers it and corrects the grade, the data now agree and the data manager closes
it (answered in words: a person closes, as in InForm); a monitor verifies the form; the data
manager freezes then locks the subject, and the coordinator's edit is refused on the page and
through the API; the data manager releases it with a reason; the investigator signs the
casebook with the password; a change to the signed CRS form breaks the signature, shown on
the casebook. Screenshots (test-artifacts/): the form with a query, the query list, the
dashboard, the signed casebook and the broken signature."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from app.study.model import ItemDef, ItemGroupDef
from tests import factories
from tests.browser.fill import add_rows, fill_form, settle
from tests.browser.test_browser_walkthrough import login
from tests.conftest import ARTIFACTS, LiveServer

pytestmark = pytest.mark.browser

CRS_ROWS = {
    "FEVERYN": "Y", "ANTIPYR_ANTICYT": "N", "HYPOTYN": "Y", "VASOPRESSIN": "N",
    "O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "3", "TMAX": "39.2", "CRSDTHYN": "N",
}  # fmt: skip


def crs_with_grade(grade: str) -> object:
    def choose(_group: ItemGroupDef, repeat: int, item: ItemDef) -> str | None:
        if item.name == "VASONUM":
            return "0" if repeat == 1 else "1"  # the derived grade is 3
        return grade if item.name == "CRSGRINV" else CRS_ROWS.get(item.name)

    return choose


def change_with_reason(page: Page, item: str, value: str, reason: str) -> None:
    """Change an item of the complete CRS form and give the reason for the change, leaving
    each field as a user does (its change event runs the live preview, which re-renders the
    form: wait for it before typing on)."""
    page.locator(f"#f-IG_CRS-1-{item}").fill(value)
    page.keyboard.press("Tab")
    settle(page)
    page.get_by_label("Reason for change").fill(reason)
    page.keyboard.press("Tab")
    settle(page)


def casebook_lock(page: Page, level: str, reason: str) -> None:
    panel = page.locator("section.locks-panel")
    panel.get_by_label("Reason", exact=True).fill(reason)
    panel.get_by_role("button", name=f"{level} the casebook").click()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_query_from_a_check_to_a_locked_casebook(
    browser: Browser, live_server: LiveServer, demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        token = factories.api_token(session, "coordinator")
    casebook = f"{live_server.url}/subjects/{subject.id}"

    site = login(browser, live_server, "coordinator")
    site.goto(casebook)
    site.get_by_role("link", name="New: Cytokine Release Syndrome Episode").click()
    add_rows(site, "Assessments (daily or per assessment, worst values in the interval)", 2)
    fill_form(site, zm001, "F.CRS", "2026-04-11", crs_with_grade("2"))  # type: ignore[arg-type]
    expect(site.locator("output#f-IG_CRS-1-CRSGRDER")).to_have_text("3")
    site.get_by_role("button", name="Save and mark complete", exact=True).click()
    expect(site.locator("p.notice")).to_have_text("Saved.")
    badge = site.locator("a.query-badge", has_text="EC051")
    expect(badge).to_have_text(re.compile(r"Query open \(EC051\)"))
    form_url = site.url.split("#")[0]
    site.screenshot(path=str(ARTIFACTS / "form-with-query.png"), full_page=True)

    query = site.locator("article.query", has_text="check EC051")
    query.get_by_label("Answer").fill("Grade 2 was a transcription error; corrected to 3.")
    query.get_by_role("button", name="Answer query").click()
    expect(query.locator(".query-state")).to_have_text("answered")
    change_with_reason(site, "CRSGRINV", "3", "Query EC051: grade corrected")
    site.get_by_role("button", name="Save and mark complete", exact=True).click()
    expect(site.locator("p.notice")).to_have_text("Saved.")
    # Answered with text: a person closes it (InForm's rule); the data now agree.
    expect(query.locator(".query-state")).to_have_text("resolved")

    manager = login(browser, live_server, "datamanager")
    manager.goto(live_server.url + "/queries")
    manager.screenshot(path=str(ARTIFACTS / "query-list.png"), full_page=True)
    manager.goto(form_url)
    reviewed = manager.locator("article.query", has_text="check EC051")
    reviewed.get_by_role("button", name="Close query").click()
    expect(reviewed.locator(".query-state")).to_have_text("closed")

    monitor = login(browser, live_server, "monitor")
    monitor.goto(form_url)
    expect(monitor.locator("p.sdv-state")).to_contain_text("Due")
    monitor.locator("section.sdv-panel").get_by_role("button", name="Verify").click()
    expect(monitor.locator("p.sdv-state")).to_contain_text("Verified by Wang Fang")

    manager.goto(live_server.url + "/dashboard")
    expect(manager.get_by_role("heading", name="Dashboard")).to_be_visible()
    manager.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    manager.goto(casebook)
    casebook_lock(manager, "Freeze", "monitoring visit")
    expect(manager.locator(".lock.level-freeze")).to_contain_text("Frozen")
    casebook_lock(manager, "Lock", "interim lock")
    expect(manager.locator(".lock.level-lock")).to_contain_text("Locked")

    site.goto(form_url)  # the page offers no edit, and says why
    expect(site.locator("#f-IG_CRS-1-CRSGRINV")).to_be_disabled()
    expect(site.locator("section.locks-panel")).to_contain_text("Locked: the casebook by Liu Yang")
    api = httpx.put(
        f"{live_server.url}/api/v1/studies/ZM001{form_url.removeprefix(live_server.url)}",
        headers={"Authorization": f"Bearer {token}"},
        json={"version": 2, "values": {"IG.CRS": {"1": {"CRSGRINV": "2"}}}, "reason": "try"},
    )
    assert api.status_code == 422 and "locked by Liu Yang" in api.json()["detail"]

    manager.goto(casebook)
    for lock in manager.locator(".lock").all()[::-1]:
        lock.get_by_label("Reason for releasing").fill("lock set in error")
        lock.get_by_role("button", name="Release").click()
    expect(manager.locator(".lock")).to_have_count(0)

    # Signing waits for the casebook's open queries: the data manager cancels the EC053 one.
    manager.goto(form_url)
    other = manager.locator("article.query", has_text="check EC053")
    other.get_by_label("Reason or note").fill("The CRS adverse event is entered later")
    other.get_by_role("button", name="Cancel query").click()
    expect(other.locator(".query-state")).to_have_text("cancelled")

    investigator = login(browser, live_server, "investigator")
    investigator.goto(casebook)
    panel = investigator.locator("section.signatures-panel")
    expect(panel).to_contain_text("I approve the data in this casebook")
    panel.get_by_label("Username").fill("investigator")
    panel.get_by_label("Password").fill("wrong password")
    panel.get_by_role("button", name="Sign casebook").click()
    expect(investigator.locator("main")).to_contain_text("Nothing was signed")
    investigator.goto(casebook)
    panel.get_by_label("Username").fill("investigator")
    panel.get_by_label("Password").fill(DEMO_PASSWORD)
    panel.get_by_role("button", name="Sign casebook").click()
    expect(investigator.locator("p.signature.valid")).to_contain_text("Signed by Dr Li Wei")
    investigator.screenshot(path=str(ARTIFACTS / "signed-casebook.png"), full_page=True)

    site.goto(form_url)
    change_with_reason(site, "CRSSTDTM", "2026-04-11T10:00", "From the nursing notes")
    site.get_by_role("button", name="Save and mark complete", exact=True).click()
    expect(site.locator("p.notice")).to_have_text("Saved.")
    investigator.goto(casebook)
    broken = investigator.locator(".signature.broken")
    expect(broken).to_contain_text("Signature broken by")
    expect(broken).to_contain_text("Zhang Min")
    expect(investigator.get_by_role("button", name="Sign again")).to_be_visible()
    investigator.screenshot(path=str(ARTIFACTS / "broken-signature.png"), full_page=True)

"""A coordinator in headless Chromium: log in, register a subject, fill Demographics, see the
derived age, save, reload and see the values. Screenshots land in test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from app.demo import DEMO_PASSWORD
from tests.conftest import ARTIFACTS, LiveServer

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_coordinator_enters_demographics_and_sees_derived_age(
    live_server: LiveServer, page: Page
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(live_server.url + "/")
    page.get_by_label("Username").fill("coordinator")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Subjects")).to_be_visible()

    page.get_by_role("button", name="Register subject").click()

    page.get_by_role("button", name="Register the subject at site 01").click()
    expect(page.get_by_role("heading", name="Subject 01-001")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "casebook.png"), full_page=True)

    page.locator("#visit-SE_SCR").get_by_role("link", name="Informed Consent").click()
    page.get_by_role("textbox", name="ICF version *", exact=True).fill("2.0")
    page.get_by_label("Date main ICF signed").fill("2026-04-01")
    page.get_by_role("radio", name="Yes").first.check()
    page.get_by_role("button", name="Save and mark complete").click()
    expect(page.locator("p.notice")).to_have_text("Saved.")

    page.get_by_role("link", name="01-001").click()
    page.locator("#visit-SE_SCR").get_by_role("link", name="Demographics").click()
    page.get_by_label("Date of birth").fill("1990-04-02")
    page.get_by_label("Date of birth").blur()
    expect(page.locator("output#f-IG_DM-1-AGE")).to_have_text("35")
    page.get_by_role("radio", name="Female").check()
    expect(page.get_by_text("Woman of childbearing potential")).to_be_visible()
    expect(page.get_by_text("Other Chinese ethnic group, specify")).to_be_hidden()
    expect(page.get_by_text("Reason not of childbearing potential")).to_be_hidden()
    page.get_by_role("radio", name="Han", exact=True).check()
    page.get_by_role("radio", name="Asian").check()
    page.screenshot(path=str(ARTIFACTS / "demographics.png"), full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("p.notice")).to_have_text("Saved.")

    page.reload()
    expect(page.get_by_label("Date of birth")).to_have_value("1990-04-02")
    expect(page.locator("output#f-IG_DM-1-AGE")).to_have_text("35")
    expect(page.get_by_role("radio", name="Female")).to_be_checked()
    expect(page.locator(".form-status")).to_have_text("in progress")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_coordinator_adds_and_removes_log_rows_and_reads_an_item_history(
    live_server: LiveServer, page: Page
) -> None:
    page.goto(live_server.url + "/login")
    page.get_by_label("Username").fill("coordinator")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Register subject").click()
    page.get_by_role("button", name="Register the subject at site 01").click()
    page.locator("#visit-SE_LOG").get_by_role("link", name="Adverse Events").click()
    expect(page.get_by_text("No rows yet.")).to_be_visible()

    add = page.get_by_role("button", name="Add a row to Adverse events")
    add.click()
    expect(page.locator("#row-IG_AE-1")).to_be_visible()
    page.get_by_role("button", name="Add a row to Adverse events").click()
    expect(page.locator("#row-IG_AE-2")).to_be_visible()
    page.get_by_label("Adverse event (verbatim term) (row 1)").fill("Headache")
    page.get_by_label("AE number (row 1)").fill("1")
    page.get_by_role("button", name="Remove row 2").click()
    expect(page.locator("#row-IG_AE-2")).to_have_count(0)
    expect(page.get_by_label("Adverse event (verbatim term) (row 1)")).to_have_value("Headache")
    page.get_by_label("Ongoing (row 1)").select_option("Y")
    expect(page.get_by_label("End date (row 1)")).to_have_count(0)  # hidden while ongoing
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("p.notice")).to_have_text("Saved.")
    expect(page.get_by_label("Adverse event (verbatim term) (row 1)")).to_have_value("Headache")
    expect(page.get_by_label("AE number (row 1)")).to_have_value("1")
    page.screenshot(path=str(ARTIFACTS / "adverse-events.png"), full_page=True)

    page.locator("#row-IG_AE-1").get_by_role("link", name="history").nth(1).click()
    expect(
        page.get_by_role("heading", name="Audit trail: Adverse event (verbatim term)")
    ).to_be_visible()
    row = page.locator(".audit-trail tbody tr").first
    expect(row).to_contain_text("coordinator")
    expect(row).to_contain_text("Insert")
    expect(row).to_contain_text("Headache")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_keyboard_login_and_pages_that_fit_a_tablet(
    live_server: LiveServer, browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 820, "height": 1180}, is_mobile=False)
    page = context.new_page()
    page.goto(live_server.url + "/login")
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus: no mouse needed
    page.keyboard.type("coordinator")
    page.keyboard.press("Tab")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Subjects")).to_be_visible()
    page.get_by_role("button", name="Register subject").focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Register the subject at site 01").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Subject 01-001")).to_be_visible()
    fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits)
    page.locator("#visit-SE_SCR").get_by_role("link", name="Demographics").click()
    assert page.evaluate(fits)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('#crf input:not([type=hidden]), #crf select, #crf textarea')]
             .filter(e => !e.labels.length && !e.getAttribute('aria-label') && !e.closest('[role=radiogroup], [role=group]'))
             .map(e => e.name)"""
    )
    assert unlabelled == []
    page.screenshot(path=str(ARTIFACTS / "tablet-demographics.png"), full_page=True)
    context.close()

"""Issue 8 §8 and §10 in headless Chromium: dates typed and shown in ISO 8601 (an impossible one
refused, nothing stored), lab and vitals tables that fit a 1280 px screen with date-times shown
in full, a warning before leaving a form with unsaved changes, and a confirmation naming the
site before a subject is registered. Screenshots land in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from app.study.model import ItemDef, ItemGroupDef
from tests.browser.fill import add_rows, fill_form
from tests.conftest import ARTIFACTS, LiveServer

pytestmark = pytest.mark.browser

SITE_01 = "site 01 · Peking Union Medical College Hospital (demo)"
FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"
ANSWER_SHOWN = """e => {
    const text = document.createElement('canvas').getContext('2d');
    text.font = getComputedStyle(e).font;
    return text.measureText(e.options[e.selectedIndex].text).width + 24 <= e.clientWidth;
}"""
"""The chosen answer of a select is shown whole (24 px: its padding and arrow)."""
TABLE_FITS = "() => [...document.querySelectorAll('.table-scroll')].every(t => t.scrollWidth <= t.clientWidth)"
"""The tables need no scrolling of their own: the scroll container is the last resort, which
Vital Signs, with 13 columns, still needs for its last 130 px or so."""


def log_in(page: Page, server: LiveServer, username: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()


def register(page: Page) -> str:
    """Register a subject at site 01 through its confirmation; the casebook's URL."""
    page.get_by_role("button", name="Register subject").click()
    page.get_by_role("button", name="Register the subject at site 01").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Subject 01-\d{3}"))).to_be_visible()
    return page.url


def open_form(page: Page, casebook: str, visit: str, title: str) -> None:
    page.goto(casebook)
    page.locator(f"#visit-{visit}").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


@pytest.fixture
def desktop(browser: Browser) -> Iterator[Page]:
    """A page on a 1280 x 800 screen, the smallest desktop the forms are laid out for."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_register_subject_asks_first_naming_the_site(live_server: LiveServer, page: Page) -> None:
    log_in(page, live_server, "coordinator")
    page.get_by_role("button", name="Register subject").click()
    expect(page.get_by_role("heading", name=f"Register a subject at {SITE_01}?")).to_be_visible()
    expect(page.locator(".confirm")).to_contain_text("a permanent subject key")
    expect(page.locator(".confirm-site")).to_have_text(SITE_01)
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_text("No subjects yet.")).to_be_visible()  # asking created nothing

    page.get_by_role("button", name="Register subject").click()
    page.get_by_role("button", name="Register the subject at site 01").click()
    expect(page.get_by_role("heading", name="Subject 01-001")).to_be_visible()
    page.goto(live_server.url + "/subjects")
    registered = page.locator("table.grid tbody tr td").nth(5)
    expect(registered).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))  # ISO, not MM/DD/YYYY


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_impossible_date_is_refused_next_to_the_field_and_nothing_is_stored(
    live_server: LiveServer, page: Page
) -> None:
    log_in(page, live_server, "coordinator")
    casebook = register(page)
    open_form(page, casebook, "SE_SCR", "Informed Consent")
    signed = page.get_by_label("Date main ICF signed")
    expect(signed).to_have_attribute("type", "text")
    expect(signed).to_have_attribute("placeholder", "YYYY-MM-DD")
    page.get_by_role("textbox", name="ICF version *", exact=True).fill("2.0")
    signed.fill("2025-02-30")
    page.get_by_role("button", name="Save", exact=True).click()

    field = page.locator(".field", has=signed)
    expect(field.locator(".error")).to_have_text(
        "Date main ICF signed 2025-02-30 is not a real calendar date"
    )
    expect(page.locator("p.notice")).to_have_count(0)
    expect(signed).to_have_value("2025-02-30")  # kept as typed, to correct it
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "impossible-date.png"), full_page=True)
    page.goto(page.url)
    expect(page.locator(".form-status")).to_have_text("not started")
    expect(page.get_by_label("Date main ICF signed")).to_have_value("")
    expect(page.get_by_role("textbox", name="ICF version *", exact=True)).to_have_value("")


def vitals(_group: ItemGroupDef, _repeat: int, item: ItemDef) -> str | None:
    return {"VSDTC": "2026-03-02 14:30"}.get(item.name)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_lab_and_vitals_tables_fit_1280_px_and_the_read_only_view_shows_dates_in_full(
    live_server: LiveServer, browser: Browser, desktop: Page, zm001: Study
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    log_in(desktop, live_server, "coordinator")
    casebook = register(desktop)
    scr = desktop.locator("#visit-SE_SCR")
    scr.get_by_label("Visit date", exact=True).fill("2026-03-02")
    scr.get_by_role("button", name="Save date").click()
    expect(desktop.locator("#visit-SE_SCR").get_by_label("Visit date", exact=True)).to_have_value(
        "2026-03-02"
    )

    open_form(desktop, casebook, "SE_SCR", "Haematology")
    desktop.screenshot(path=str(ARTIFACTS / "haematology-1280.png"), full_page=True)
    assert desktop.evaluate(FITS)
    assert desktop.evaluate(TABLE_FITS)

    open_form(desktop, casebook, "SE_SCR", "Vital Signs")
    add_rows(desktop, "Vital signs measurements", 1)
    fill_form(desktop, zm001, "F.VS", "2026-03-02", vitals)
    desktop.get_by_role("button", name="Save", exact=True).click()
    expect(desktop.locator("p.notice")).to_have_text("Saved.")
    desktop.screenshot(path=str(ARTIFACTS / "vitals-1280.png"), full_page=True)
    assert desktop.evaluate(FITS)
    assert desktop.evaluate(TABLE_FITS), "the vital signs table scrolls inside the page"
    desktop.get_by_label("Supplemental oxygen (row 1)").select_option("Y")
    expect(desktop.get_by_label("Oxygen flow rate (row 1)")).to_be_visible()
    assert desktop.evaluate(TABLE_FITS), "the oxygen flow rate column does not fit"
    position = desktop.get_by_label("Position (row 1)")
    position.select_option("SEMI-RECUMBENT")
    desktop.wait_for_load_state("networkidle")  # the form's preview has replaced the select
    assert position.evaluate(ANSWER_SHOWN), "Semi-recumbent is cut"
    form = desktop.url.split("?")[0]

    monitor = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    log_in(monitor, live_server, "monitor")
    monitor.goto(casebook)
    expect(monitor.locator("#visit-SE_SCR").get_by_label("Visit date", exact=True)).to_have_value(
        "2026-03-02"
    )
    monitor.goto(form)
    taken = monitor.get_by_label("Date and time of measurement (row 1)")
    expect(taken).to_be_disabled()
    expect(taken).to_have_value("2026-03-02 14:30")
    assert taken.evaluate("e => e.scrollWidth <= e.clientWidth"), "the date-time is cut"
    monitor.screenshot(path=str(ARTIFACTS / "vitals-read-only-1280.png"), full_page=True)
    assert monitor.evaluate(FITS)
    assert monitor.evaluate(TABLE_FITS)
    monitor.locator("td", has=taken).get_by_role("link", name="history").click()
    expect(monitor.locator(".audit-trail tbody tr").first).to_contain_text("2026-03-02 14:30")
    monitor.context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_leaving_a_form_with_unsaved_changes_warns_and_a_clean_one_does_not(
    live_server: LiveServer, page: Page
) -> None:
    dialogs: list[str] = []

    def stay(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    log_in(page, live_server, "coordinator")
    casebook = register(page)
    open_form(page, casebook, "SE_SCR", "Informed Consent")
    page.locator(".crumbs").get_by_role("link", name="01-001").click()
    expect(page.get_by_role("heading", name="Subject 01-001")).to_be_visible()
    assert dialogs == []  # nothing typed, nothing to lose

    open_form(page, casebook, "SE_SCR", "Informed Consent")
    page.get_by_role("textbox", name="ICF version *", exact=True).fill("2.0")
    page.locator(".crumbs").get_by_role("link", name="01-001").click()
    for _ in range(50):  # the dialog event arrives while Playwright waits
        if dialogs:
            break
        page.wait_for_timeout(100)
    assert dialogs == ["beforeunload"]
    expect(page.get_by_role("heading", name="Informed Consent")).to_be_visible()  # stayed

    page.get_by_role("button", name="Save", exact=True).click()  # submitting is not leaving
    expect(page.locator("p.notice")).to_have_text("Saved.")
    page.locator(".crumbs").get_by_role("link", name="01-001").click()
    expect(page.get_by_role("heading", name="Subject 01-001")).to_be_visible()
    assert dialogs == ["beforeunload"]

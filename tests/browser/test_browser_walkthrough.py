"""Issue 3 acceptance in headless Chromium: a coordinator takes a subject from consent to
follow-up (eligibility failed then corrected with a reason, enrolment by the investigator,
leukapheresis, lymphodepletion, infusion, a CRS episode graded from the entered vitals and
oxygen, an adverse event, a follow-up visit out of window). Screenshots: test-artifacts/."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from app.study.model import ItemDef, ItemGroupDef
from tests.browser.fill import Choose, add_rows, fill_form, settle
from tests.conftest import ARTIFACTS, LiveServer

pytestmark = pytest.mark.browser


def login(browser: Browser, server: LiveServer, username: str) -> Page:
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return page


def open_form(page: Page, casebook: str, visit: str, title: str) -> None:
    page.goto(casebook)
    page.locator(f"#visit-{visit}").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def save(page: Page, complete: bool = True) -> None:
    page.get_by_role(
        "button", name="Save and mark complete" if complete else "Save", exact=True
    ).click()
    expect(page.locator("p.notice")).to_have_text("Saved.")


def change_status(page: Page, casebook: str, label: str, expected: str) -> None:
    page.goto(casebook)
    transition = page.locator("details.transition", has_text=label)
    transition.evaluate("details => { details.open = true }")
    transition.get_by_role("button", name=label).click()
    expect(page.locator(".subject-status")).to_have_text(expected)


def values(table: dict[str, str]) -> Choose:
    def choose(_group: ItemGroupDef, _repeat: int, item: ItemDef) -> str | None:
        return table.get(item.name)

    return choose


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_coordinator_takes_a_subject_from_consent_to_follow_up(
    live_server: LiveServer,
    browser: Browser,
    zm001: Study,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = login(browser, live_server, "coordinator")
    page.get_by_role("button", name="Register subject").click()
    page.get_by_role("button", name="Register the subject at site 01").click()
    casebook = page.url

    open_form(page, casebook, "SE_SCR", "Informed Consent")
    fill_form(page, zm001, "F.IC", "2026-03-02", values({"ICLTFU": "Y"}))
    save(page)
    open_form(page, casebook, "SE_SCR", "Demographics")
    fill_form(
        page,
        zm001,
        "F.DM",
        "2026-03-02",
        values({"BRTHDAT": "1985-06-15", "SEX": "F", "CHILDPOT": "N"}),
    )
    expect(page.locator("output#f-IG_DM-1-AGE")).to_have_text("40")
    save(page)

    def eligibility(failed: int | None, investigator: str) -> Choose:
        def choose(group: ItemGroupDef, repeat: int, item: ItemDef) -> str | None:
            if item.name == "IEORRES":
                met = repeat != failed
                return ("Y" if met else "N") if repeat <= 11 else ("N" if met else "Y")
            return {"ELIGYN": investigator, "ENRLDAT": "2026-03-05"}.get(item.name)

        return choose

    open_form(page, casebook, "SE_SCR", "Eligibility Criteria")
    fill_form(page, zm001, "F.IE", "2026-03-05", eligibility(failed=4, investigator="N"))
    expect(page.locator("output#f-IG_IE-1-ELIGDER")).to_have_text("N")
    save(page)
    page.goto(casebook)
    expect(page.locator("details.transition", has_text="Enrol")).to_contain_text(
        "Every inclusion criterion must be met"
    )

    open_form(page, casebook, "SE_SCR", "Eligibility Criteria")
    fill_form(page, zm001, "F.IE", "2026-03-05", eligibility(failed=None, investigator="Y"))
    page.get_by_role("button", name="Save and mark complete").click()
    expect(page.locator(".reason").first).to_be_visible()  # a reason is asked per changed value
    page.get_by_label("Reason for change").fill("IN04 re-assessed: SLEDAI-2K 9 on source")
    save(page)

    investigator = login(browser, live_server, "investigator")
    investigator.goto(casebook)
    enrol = investigator.locator("details.transition", has_text="Enrol")
    enrol.get_by_label("Dose level").select_option("DL1")
    enrol.get_by_role("button", name="Enrol").click()
    expect(investigator.locator(".subject-status")).to_have_text("Enrolled")
    expect(investigator.locator(".dose-level")).to_have_text("DL1")

    open_form(page, casebook, "SE_APH", "Leukapheresis")
    fill_form(page, zm001, "F.APH", "2026-03-20", values({"APHYN": "Y", "APHNUM": "1"}))
    save(page)
    change_status(page, casebook, "Record leukapheresis", "Leukapheresed")

    open_form(page, casebook, "SE_LD", "Lymphodepletion")
    add_rows(page, "Administrations (one row per drug per day)", 2)

    def lymphodepletion(_group: ItemGroupDef, repeat: int, item: ItemDef) -> str | None:
        row = {"LDDRUG": ("FLUDARABINE", "CYCLOPHOSPHAMIDE"), "LDPLDOS": ("25", "250"),
               "LDADOS": ("41", "415")}  # fmt: skip
        header = {"LDHT": "165", "LDWT": "60", "LDBSA": "1.66", "LDCRCL": "95", "LDMODYN": "N"}
        return row[item.name][repeat - 1] if item.name in row else header.get(item.name)

    fill_form(page, zm001, "F.LD", "2026-04-05", lymphodepletion)
    save(page)
    change_status(page, casebook, "Record lymphodepletion", "Lymphodepleted")

    open_form(page, casebook, "SE_D0", "ZM001 Infusion")
    fill_form(page, zm001, "F.EX", "2026-04-10", values({"DOSELVL": "DL1", "EXDOSE": "24.5",
              "EXSTDTM": "2026-04-10T10:00", "EXENDTM": "2026-04-10T10:20", "EXCOMP": "Y",
              "PRECHK": "Y"}))  # fmt: skip
    save(page)
    change_status(page, casebook, "Record infusion", "Infused")
    change_status(page, casebook, "Start follow-up", "In follow-up")

    page.goto(casebook)
    page.get_by_role("link", name="New: Cytokine Release Syndrome Episode").click()
    add_rows(page, "Assessments (daily or per assessment, worst values in the interval)", 2)

    def crs(_group: ItemGroupDef, repeat: int, item: ItemDef) -> str | None:
        rows = {"FEVERYN": "Y", "ANTIPYR_ANTICYT": "N", "HYPOTYN": "Y", "VASOPRESSIN": "N",
                "O2DEV": "LOW-FLOW NASAL CANNULA", "O2FLOW": "3", "TMAX": "39.2",
                "VASONUM": "0" if repeat == 1 else "1", "CRSDTHYN": "N", "CRSGRINV": "3"}  # fmt: skip
        return rows.get(item.name)

    fill_form(page, zm001, "F.CRS", "2026-04-11", crs)
    expect(page.locator("output#f-IG_CRS_ASM-1-CRSGRROW")).to_have_text("2")
    expect(page.locator("output#f-IG_CRS_ASM-2-CRSGRROW")).to_have_text("3")
    expect(page.locator("output#f-IG_CRS-1-CRSGRDER")).to_have_text("3")
    save(page)
    page.screenshot(path=str(ARTIFACTS / "crs-episode.png"), full_page=True)

    page.goto(casebook)
    page.locator("#visit-SE_LOG").get_by_role("link", name="Adverse Events", exact=True).click()
    add_rows(page, "Adverse events", 1)
    fill_form(page, zm001, "F.AE", "2026-04-11", values({
        "AETERM": "Cytokine release syndrome", "AESPID": "1", "AEONGO": "N",
        "AEENDAT": "2026-04-15", "AETOXGR": "3", "AESER": "N"}))  # fmt: skip
    save(page)

    page.goto(casebook)
    d7 = page.locator("#visit-SE_D7")
    d7.get_by_label("Visit date").fill("2026-04-20")
    d7.get_by_role("button", name="Save date").click()
    expect(page.locator("#visit-SE_D7 .visit-state")).to_have_text("out of window")
    expect(page.locator("#visit-SE_D7 .study-day")).to_have_text("day 10")
    page.screenshot(path=str(ARTIFACTS / "casebook-follow-up.png"), full_page=True)
    settle(page)

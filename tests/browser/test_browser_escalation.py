"""Issue 10 acceptance in headless Chromium: three subjects at DL1 complete their DLT windows
(infusion dates typed into the infusion form), the escalation page recommends escalating,
the sponsor records and signs the board's decision, a subject is enrolled at DL2 (DL1 is no
longer offered), an infusion dated before the decision is refused with its reason (EC030),
and a DLT at DL2 moves DL2 to OPEN_B. Screenshots of the escalation page and the board
report: test-artifacts/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from tests.browser.test_browser_walkthrough import login
from tests.conftest import ARTIFACTS, LiveServer
from tests.escalation.casebooks import dlt, eligible, enrol

pytestmark = pytest.mark.browser


def type_infusion(page: Page, server: LiveServer, subject_id: int, start: str) -> None:
    """Open the subject's infusion form and save the infusion start as typed."""
    page.goto(f"{server.url}/subjects/{subject_id}")
    page.locator("#visit-SE_D0").get_by_role("link", name="ZM001 Infusion", exact=True).click()
    page.locator("#f-IG_EX-1-EXSTDTM").fill(start)
    page.get_by_role("button", name="Save", exact=True).click()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_board_opens_dl2_after_three_dl1_windows_and_a_dlt_expands_it(
    live_server: LiveServer, browser: Browser, zm001: Study, demo_engine: Engine
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    today = datetime.now(UTC).date()
    d0 = today - timedelta(days=60)
    with Session(demo_engine, expire_on_commit=False) as session:
        cohort = [enrol(session, zm001, "DL1", d0 - timedelta(days=35)) for _ in range(3)]
        candidate = eligible(session, zm001, today)
    site = login(browser, live_server, "coordinator")
    for subject, offset in zip(cohort, (0, 7, 8), strict=True):
        type_infusion(site, live_server, subject.id or 0, f"{d0 + timedelta(days=offset)}T10:00")
        expect(site.locator("p.notice")).to_have_text("Saved.")

    sponsor = login(browser, live_server, "sponsor")
    sponsor.goto(live_server.url + "/escalation")
    expect(sponsor.locator("#escalation-state")).to_contain_text(
        "DL1 is cleared; escalate to DL2 once the board decides."
    )
    expect(sponsor.locator("#level-DL1")).to_contain_text("CLEARED")
    sponsor.get_by_label("Decision", exact=True).select_option("escalate")
    sponsor.locator("#record-decision").get_by_label("DL2", exact=True).check()
    sponsor.get_by_label("Decision date").fill(today.isoformat())
    sponsor.get_by_label("Rationale").fill("0 DLTs in 3 evaluable at DL1; no safety concern.")
    sponsor.get_by_label("Password").fill(DEMO_PASSWORD)
    sponsor.get_by_role("button", name="Sign and record decision").click()
    history = sponsor.locator("#decision-history")
    expect(history).to_contain_text("Escalate to the next level DL2")
    expect(history).to_contain_text("Zhao Lei")

    investigator = login(browser, live_server, "investigator")
    investigator.goto(f"{live_server.url}/subjects/{candidate.id}")
    levels = investigator.locator("#dose-level option")
    expect(levels).to_have_count(2)  # the empty choice and DL2: DL1 is cleared, DL3 closed
    investigator.locator("#dose-level").select_option("DL2")
    investigator.get_by_role("button", name="Enrol", exact=True).click()
    expect(investigator.locator(".dose-level")).to_have_text("DL2")

    type_infusion(site, live_server, candidate.id or 0, f"{today - timedelta(days=1)}T10:00")
    expect(site.locator("#crf")).to_contain_text(
        f"DL2 was opened by the board on {today}; an infusion on {today - timedelta(days=1)} "
        "is before that decision (EC030)."
    )
    type_infusion(site, live_server, candidate.id or 0, f"{today}T10:00")
    expect(site.locator("p.notice")).to_have_text("Saved.")

    with Session(demo_engine, expire_on_commit=False) as session:
        dlt(session, zm001, candidate, today)
    sponsor.goto(live_server.url + "/escalation")
    expect(sponsor.locator("#level-DL2")).to_contain_text("OPEN_B")
    expect(sponsor.locator("#escalation-state")).to_contain_text("treat DL2 to 6 evaluable")
    sponsor.screenshot(path=str(ARTIFACTS / "escalation.png"), full_page=True)
    sponsor.get_by_role("link", name="Board report").click()
    expect(sponsor.locator("body")).to_contain_text("DL2-1")
    sponsor.screenshot(path=str(ARTIFACTS / "board-report.png"), full_page=True)

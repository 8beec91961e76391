"""The escalation pages over HTTP on both databases, on casebooks entered through the write
path: what the investigator, the monitor and the sponsor see (the state in words, each level's
status, subjects by pseudonym only, the DLT windows, the next cohort, the chart, the board's
decisions with their signatures), the printable board report, the sponsor signing a decision
(a refusal stores nothing; a wrong password is audited), the operating characteristics form,
and a coordinator refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import httpx
import pytest
from lxml import etree, html
from sqlmodel import Session, col, func, select

from app.audit import AuditAction
from app.demo import DEMO_PASSWORD
from app.escalation.records import BoardDecisionRecord
from app.models import AuditRecord, Subject, utcnow
from app.site_time import local_date
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client
from tests.escalation.casebooks import dlt, enrol, infuse, saved

ZONE = "Asia/Shanghai"
"""The demo sites' time zone: the pages' day is the latest date at the study's sites."""


@dataclass(frozen=True)
class Cohorts:
    today: date
    dl1: list[Subject]
    """DL1-1 and DL1-2 at site 01, DL1-3 at site 02; their windows completed without DLT."""
    toxic: Subject
    """DL2-1: a DLT 4 days after the infusion."""
    pending: Subject
    """DL2-2: infused 10 days ago, in the window."""


def build(server: InProcessServer, study: Study) -> Cohorts:
    """DL1 cleared, DL2 opened by the board and then expanded by a DLT, one subject waiting."""
    today = local_date(ZONE, utcnow())
    base = today - timedelta(days=120)
    engine = server.app.fastapi.state.engine
    with Session(engine, expire_on_commit=False) as session:
        dl1 = []
        for offset, site in ((0, 1), (7, 1), (8, 2)):
            subject = enrol(session, study, "DL1", base - timedelta(days=3), site_id=site)
            saved(infuse(session, study, subject, base + timedelta(days=offset), site_id=site))
            dl1.append(subject)
        factories.open_level(session, study, "DL2", base + timedelta(days=40))
        toxic = enrol(session, study, "DL2", base + timedelta(days=40))
        saved(infuse(session, study, toxic, base + timedelta(days=41)))
        dlt(session, study, toxic, base + timedelta(days=45))
        pending = enrol(session, study, "DL2", base + timedelta(days=41))
        saved(infuse(session, study, pending, today - timedelta(days=10)))
    return Cohorts(today, dl1, toxic, pending)


def page(client: httpx.Client, path: str, status: int = 200) -> html.HtmlElement:
    response = client.get(path)
    assert response.status_code == status, (path, response.text[:800])
    return html.fromstring(response.text)


def text(tree: html.HtmlElement, xpath: str) -> str:
    (found,) = tree.xpath(xpath)
    return " ".join(found.text_content().split())


def cells(row: html.HtmlElement) -> str:
    """A table row's cells, one space between them."""
    shown = (" ".join(c.text_content().split()) for c in row.xpath("./th | ./td"))
    return " ".join(cell for cell in shown if cell)


def test_the_page_shows_the_state_levels_and_subjects_by_pseudonym_only(
    app_server: InProcessServer, zm001: Study
) -> None:
    cohorts = build(app_server, zm001)
    investigator = logged_in_client(app_server, "investigator")  # site 01
    tree = page(investigator, "/escalation")
    assert "Escalation" in [a.text for a in tree.xpath('//nav[@class="menu"]/a')]
    assert text(tree, '//*[@id="escalation-state"]') == (
        "State: ESCALATING at DL2 DL2: 1 DLT in 1 evaluable, 1 in the 28-day window: treat DL2 "
        "to 6 evaluable subjects (4 more to enrol)."
    )
    assert "CLEARED" in text(tree, '//*[@id="level-DL1"]//h3')
    assert "OPEN_B" in text(tree, '//*[@id="level-DL2"]//h3')
    assert "CLOSED" in text(tree, '//*[@id="level-DL3"]//h3')
    dl2 = tree.xpath('//*[@id="level-DL2"]//table[contains(@class, "counts")]/tbody/tr/td')
    assert [td.text_content() for td in dl2] == ["2", "1", "1", "1", "0"]

    # Pseudonyms only; a link to the casebook where the investigator sees the site.
    rows = tree.xpath('//table[contains(@class, "subjects")]/tbody/tr')
    names = {" ".join(r.xpath("./td")[0].text_content().split()): r for r in rows}
    assert sorted(names) == ["DL1-1", "DL1-2", "DL1-3", "DL2-1", "DL2-2"]
    assert names["DL1-1"].xpath("./td/a/@href") == [f"/subjects/{cohorts.dl1[0].id}"]
    assert names["DL1-3"].xpath("./td/a") == []  # site 02
    body = etree.tostring(tree, encoding="unicode")
    for subject in [*cohorts.dl1, cohorts.toxic, cohorts.pending]:
        assert subject.subject_key not in body
    assert names["DL2-1"].xpath('.//*[@class="dlt-mark"]')
    ends = cohorts.today + timedelta(days=18)
    window = names["DL2-2"].xpath("./td")[3]
    assert " ".join("".join(window.xpath("./text()")).split()) == (
        f"day 10 of 28, ends {ends.isoformat()} (18 days left)"
    )
    assert window.xpath("./svg/@aria-label") == ["10 of 28 days of the DLT window (36%)"]
    assert "DLT window completed" in names["DL1-1"].xpath("./td")[3].text_content()

    # The next cohort: 4 places left at DL2, 0 to 4 DLTs among them.
    cohort = tree.xpath('//*[@id="next-cohort"]//tbody/tr')
    assert [r.xpath("./th")[0].text_content() for r in cohort] == [
        "0 of 4", "1 of 4", "2 of 4", "3 of 4", "4 of 4",
    ]  # fmt: skip
    assert cohort[0].xpath("./td")[0].text_content() == "ESCALATING at DL2"  # the one waiting
    assert cohort[1].xpath("./td")[0].text_content() == "DEESCALATING at DL1"

    (chart,) = tree.xpath('//svg[@id="escalation-chart"]')
    svg = etree.fromstring(etree.tostring(chart))
    assert svg.get("role") == "img" and "5 subjects infused" in (svg.get("aria-label") or "")
    classes = [m.get("class") for m in svg.xpath("//*[@data-subject]")]
    assert classes == ["mark no-dlt"] * 3 + ["mark dlt", "mark pending"]
    assert [t.text for t in svg.xpath("//*[@class='rule-label']")] == ["escalate"]

    history = text(tree, '//*[@id="decision-history"]')
    assert f"Escalate to the next level DL2, {(cohorts.today - timedelta(days=80))}" in history
    assert "Signed by Zhao Lei on" in history
    assert tree.xpath('//*[@id="record-decision"]') == []  # the investigator records nothing

    # The casebook shows the subject's window.
    casebook = page(investigator, f"/subjects/{cohorts.pending.id}")
    assert text(casebook, '//*[@id="dlt-window"]') == (
        f"DLT window: day 10 of 28, ends {ends.isoformat()} (18 days left)"
    )
    done = page(investigator, f"/subjects/{cohorts.dl1[0].id}")
    assert text(done, '//*[@id="dlt-window"]') == "DLT window completed"


def test_the_board_report_is_one_printable_page(app_server: InProcessServer, zm001: Study) -> None:
    cohorts = build(app_server, zm001)
    monitor = logged_in_client(app_server, "monitor")
    tree = page(monitor, "/escalation/report")
    report = text(tree, '//article[@class="board-report"]')
    assert f"ZM001 · ZM001 in refractory SLE · as of {cohorts.today.isoformat()}" in report
    assert "State: ESCALATING at DL2" in report
    counts = tree.xpath('//table[contains(@class, "counts")]/tbody/tr')
    assert [cells(r) for r in counts] == [
        "DL1 CLEARED 3 3 0 0 0", "DL2 OPEN_B 2 1 1 1 0", "DL3 CLOSED 0 0 0 0 0",
        "DL4 CLOSED 0 0 0 0 0",
    ]  # fmt: skip
    base = cohorts.today - timedelta(days=120)
    assert cells(tree.xpath('//table[@id="dlt-listing"]/tbody/tr')[0]) == (
        f"DL2-1 DL2 {base + timedelta(days=41)} {base + timedelta(days=45)}"
    )
    ends = cohorts.today + timedelta(days=18)
    assert cells(tree.xpath('//table[@id="in-window"]/tbody/tr')[0]) == (
        f"DL2-2 DL2 {cohorts.today - timedelta(days=10)} 10 of 28 {ends} 18"
    )
    assert text(tree, '//*[@id="report-recommendation"]').startswith("ESCALATING at DL2: DL2:")
    assert "Escalate to the next level DL2" in text(tree, '//*[@id="last-decision"]')
    block = text(tree, '//section[@class="signature-block"]')
    assert block.startswith("Decision: ____") and "Signed: ____" in block and "Date: ____" in block
    css = monitor.get("/static/trialdesk.css").text
    assert "@media print" in css and ".topbar, .no-print { display: none; }" in css


def _decisions(server: InProcessServer) -> int:
    with Session(server.app.fastapi.state.engine) as session:
        return session.exec(select(func.count()).select_from(BoardDecisionRecord)).one()


def _post(client: httpx.Client, **fields: str | list[str]) -> httpx.Response:
    token = csrf_token(client, "/escalation")
    data = {"csrftoken": token, "meaning": "I record this decision.", "rationale": "Reviewed."}
    return client.post("/escalation/decisions", data=data | fields)


def test_the_sponsor_signs_a_decision_a_refusal_stores_nothing(
    app_server: InProcessServer, zm001: Study
) -> None:
    cohorts = build(app_server, zm001)
    sponsor = logged_in_client(app_server, "sponsor")
    tree = page(sponsor, "/escalation")
    form = tree.xpath('//*[@id="record-decision"]//form')[0]
    labels = {" ".join(label.text_content().split()) for label in form.xpath(".//label")}
    assert {"Decision", "Decision date", "Rationale", "Override reason", "Meaning",
            "Password", "DL1", "DL2", "DL3", "DL4"} <= labels  # fmt: skip
    assert form.xpath('.//button[@type="submit"]')[0].text == "Sign and record decision"
    assert text(form, './/*[@class="printed-name"]') == "Zhao Lei"
    before = _decisions(app_server)
    day = cohorts.today.isoformat()

    # Escalating to DL3 while the rules expand DL2 needs a reason to override them (EC060).
    refused = _post(sponsor, kind="escalate", levels=["DL3"], decided_on=day,
                    password=DEMO_PASSWORD)  # fmt: skip
    assert refused.status_code == 422
    message = text(html.fromstring(refused.text), '//*[@id="decision-error"]')
    assert message.startswith("The rules do not support this decision (escalate to the next")
    assert "To record it anyway, give the reason for overriding the rules" in message
    assert _decisions(app_server) == before

    wrong = _post(sponsor, kind="pause", decided_on=day, password="not it")
    assert wrong.status_code == 422
    assert "The password is wrong. Nothing was recorded or signed." in wrong.text
    assert _decisions(app_server) == before
    with Session(app_server.app.fastapi.state.engine) as session:
        failed = session.exec(
            select(AuditRecord).where(col(AuditRecord.action) == AuditAction.SIGN_FAILED)
        ).all()
    assert [r.details for r in failed][-1].endswith("signing a board decision")

    forced = _post(sponsor, kind="escalate", levels=["DL3"], decided_on=day,
                   password=DEMO_PASSWORD, override_reason="The DL2 DLT was unrelated.")  # fmt: skip
    assert forced.status_code == 303
    assert _decisions(app_server) == before + 1
    signed = _post(sponsor, kind="pause", decided_on=day, password=DEMO_PASSWORD,
                   rationale="Review of the DL2 DLT.", minutes_reference="SRC-07")  # fmt: skip
    assert signed.status_code == 303 and signed.headers["location"].startswith("/escalation")
    assert _decisions(app_server) == before + 2
    tree = page(sponsor, "/escalation")
    newest, override, _ = tree.xpath('//*[@id="decision-history"]/article')
    shown = " ".join(newest.text_content().split())
    assert shown.startswith(f"Pause infusions, {day} Review of the DL2 DLT. (minutes: SRC-07)")
    assert "Signed by Zhao Lei on" in shown and "UTC: I record this decision." in shown
    assert text(override, './/*[@class="override-reason"]') == (
        "Overriding the rules: The DL2 DLT was unrelated."
    )
    assert "The rules then: ESCALATING at DL2: DL2: 1 DLT in 1 evaluable" in override.text_content()
    assert text(tree, '//*[@id="escalation-state"]').startswith("State: PAUSED_REVIEW at DL2")
    assert "The rules recommend ESCALATING at DL2" in text(tree, '//*[@id="escalation-state"]')

    investigator = logged_in_client(app_server, "investigator")
    assert _post(investigator, kind="resume", decided_on=day, password=DEMO_PASSWORD
                 ).status_code == 403  # fmt: skip
    assert _decisions(app_server) == before + 2


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ("0.05,abc,0.2,0.3", "'abc' is not a number"),
        ("0.05,0.1,1.5,0.3", "1.5 is not a probability"),
        ("0.1,0.2", "Give 4 rates, one per level (DL1, DL2, DL3, DL4), not 2."),
    ],
)
def test_operating_characteristics_for_the_rates_asked_bad_rates_named(
    app_server: InProcessServer, rates: str, message: str
) -> None:
    manager = logged_in_client(app_server, "datamanager")
    tree = page(manager, "/escalation")
    table = tree.xpath('//table[@aria-label="Operating characteristics per level"]/tbody/tr')
    assert [r.xpath("./th")[0].text for r in table] == ["DL1", "DL2", "DL3", "DL4"]
    assert [r.xpath("./td")[1].text for r in table] == ["10.0%", "38.9%", "36.1%", "12.3%"]
    foot = tree.xpath('//*[@id="operating-characteristics"]//tfoot/tr')
    assert [cells(r) for r in foot] == ["All 15.50 2.84", "P(stop with none tolerated) 2.7%"]
    (chart,) = tree.xpath('//svg[@id="mtd-chart"]')
    assert "DL2 39%" in (chart.get("aria-label") or "")
    bad = page(manager, f"/escalation?rates={rates}")
    assert message in text(bad, '//*[@id="rates-error"]')
    assert bad.xpath('//table[@aria-label="Operating characteristics per level"]') == []


def test_a_coordinator_may_not_open_the_escalation(app_server: InProcessServer) -> None:
    coordinator = logged_in_client(app_server, "coordinator")
    assert "Escalation" not in [a.text for a in page(coordinator, "/subjects").xpath("//nav/a")]
    for path in ("/escalation", "/escalation/report"):
        assert coordinator.get(path).status_code == 403
    assert _post(coordinator, kind="pause", decided_on="2026-01-01", password=DEMO_PASSWORD
                 ).status_code == 403  # fmt: skip

"""What pages say, in the words of their users: role labels, the study named once, anchor
labels as written, no export jargon on site pages, and a visit's forms counted apart from its
window."""

from __future__ import annotations

import httpx
import lxml.html
import pytest

from tests.conftest import InProcessServer, csrf_token, logged_in_client
from tests.test_web import complete_consent, register


def html(response: httpx.Response) -> lxml.html.HtmlElement:
    assert response.status_code == 200, response.text
    return lxml.html.fromstring(response.text)


def visible_text(page: lxml.html.HtmlElement) -> str:
    return " ".join(page.xpath("//body//text()[not(ancestor::script)]"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_roles_show_as_labels_and_the_study_is_named_once(app_server: InProcessServer) -> None:
    manager = html(logged_in_client(app_server, "datamanager").get("/subjects"))
    assert manager.xpath("string(//header//span[@class='user'])") == "Liu Yang (Data manager)"
    assert manager.xpath("string(//header//span[@class='study'])") == "ZM001 in refractory SLE"
    assert "data_manager" not in visible_text(manager)

    admin = html(logged_in_client(app_server, "admin").get("/admin"))
    assert admin.xpath("string(//header//span[@class='user'])") == "Sun Tao (Administrator)"
    roles = admin.xpath("//select[@id='new-role']/option/text()")
    assert roles == [
        "Investigator", "Coordinator", "Monitor", "Data manager", "Sponsor", "Administrator"
    ]  # fmt: skip
    row = admin.xpath("//tr[td[1]='datamanager']")[0]
    assert "Data manager study-wide" in " ".join(row.xpath("td[3]//text()")).split("remove")[0]
    assert "data_manager" not in visible_text(admin)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_casebook_keeps_codes_capitalised_and_shows_no_visitnum(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "coordinator")
    casebook = html(client.get(f"/subjects/{register(client)}"))
    timings = casebook.xpath("//p[@class='timing']/text()")
    assert "day +7 from ZM001 infusion day (D0) (window +6 to +8)" in timings
    assert "day -28 from leukapheresis day (L0) (window -28 to -1)" in timings
    assert not [text for text in timings if "zM001" in text]
    assert "VISITNUM" not in visible_text(casebook)


def date_visit(client: httpx.Client, subject: int, event: str, day: str) -> None:
    token = csrf_token(client, f"/subjects/{subject}")
    response = client.post(
        f"/subjects/{subject}/events/{event}/1/date", data={"visit_date": day, "csrftoken": token}
    )
    assert response.status_code == 303, response.text


def save_infusion(client: httpx.Client, subject: int, moment: str) -> None:
    path = f"/subjects/{subject}/events/SE.D0/1/forms/F.EX/1"
    token = csrf_token(client, path)
    data = {"csrftoken": token, "_version": "0", "_action": "save", "IG.EX:1:EXSTDTM": moment}
    assert client.post(path, data=data).status_code == 303


def visit_summary(page: lxml.html.HtmlElement, visit_id: str) -> tuple[str, str]:
    section = page.get_element_by_id(visit_id)
    state = section.xpath("string(.//span[@class='visit-state'])")
    return state, " ".join(section.xpath("string(.//p[@class='visit-progress'])").split())


def test_a_dated_visit_says_how_many_of_its_forms_are_complete(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    page = html(client.get(f"/subjects/{subject}"))
    screening_forms = len(page.get_element_by_id("visit-SE_SCR").xpath(".//ul[@class='forms']/li"))
    assert screening_forms > 20
    assert visit_summary(page, "visit-SE_SCR") == (
        "", f"not dated · 0 of {screening_forms} forms complete"
    )  # fmt: skip

    assert complete_consent(client, subject, "2026-03-02").status_code == 303
    date_visit(client, subject, "SE.SCR", "2026-03-02")
    save_infusion(client, subject, "2026-03-20T09:00")
    date_visit(client, subject, "SE.D7", "2026-03-27")
    date_visit(client, subject, "SE.D14", "2026-04-10")
    page = html(client.get(f"/subjects/{subject}"))
    # Screening is timed from leukapheresis, not known yet: dated, no window state, not "done"
    assert visit_summary(page, "visit-SE_SCR") == (
        "", f"dated · 1 of {screening_forms} forms complete"
    )  # fmt: skip
    d7_forms = len(page.get_element_by_id("visit-SE_D7").xpath(".//ul[@class='forms']/li"))
    assert visit_summary(page, "visit-SE_D7") == (
        "in window", f"dated · 0 of {d7_forms} forms complete"
    )  # fmt: skip
    assert visit_summary(page, "visit-SE_D14")[0] == "out of window"
    assert "done" not in visible_text(page).split()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_impossible_visit_or_status_date_gets_the_casebook_with_the_reason(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "coordinator")
    subject = register(client)
    token = csrf_token(client, f"/subjects/{subject}")
    for path, data in (
        (f"/subjects/{subject}/events/SE.SCR/1/date", {"visit_date": "2026-02-30"}),
        (f"/subjects/{subject}/status", {"to": "screen_failed", "effective": "2026-02-30"}),
    ):
        response = client.post(path, data={**data, "csrftoken": token})
        assert response.status_code == 422, path
        page = lxml.html.fromstring(response.text)
        error = page.xpath("string(//p[@class='error'])")
        assert error.endswith("2026-02-30 is not a real calendar date"), error
        assert page.xpath("string(//h1)").startswith("Subject 01-001")
    dated = html(client.get(f"/subjects/{subject}"))
    assert dated.get_element_by_id("visit-SE_SCR-date").get("value") == ""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_registering_at_a_site_not_ones_own_is_not_found(app_server: InProcessServer) -> None:
    client = logged_in_client(app_server, "coordinator")
    confirm = html(client.get("/subjects/register", params={"site_id": 1}))
    assert "a permanent subject key" in visible_text(confirm)
    assert client.get("/subjects/register", params={"site_id": 2}).status_code == 404

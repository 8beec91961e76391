"""Every page leads somewhere: each user's menu holds only pages they may open, error pages keep
the menu and the log-out button, and a malformed id gets the same "Not found" page as a missing
one (the API keeps answering JSON)."""

from __future__ import annotations

import httpx
import lxml.html
import pytest

from app.demo import DEMO_ACCOUNTS
from tests.conftest import InProcessServer, logged_in_client

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def page(response: httpx.Response) -> lxml.html.HtmlElement:
    assert response.headers["content-type"].startswith("text/html"), response.text
    return lxml.html.fromstring(response.text)


def menu_links(html: lxml.html.HtmlElement) -> list[tuple[str, str]]:
    return [(a.text_content(), a.get("href")) for a in html.xpath("//nav[@class='menu']/a")]


def heading_and_message(html: lxml.html.HtmlElement) -> tuple[str, str]:
    return html.xpath("string(//main/h1)"), html.xpath("string(//main/p[1])")


def has_log_out(html: lxml.html.HtmlElement) -> bool:
    return bool(html.xpath("//form[@action='/logout']//button[normalize-space()='Log out']"))


def test_every_menu_link_of_every_demo_account_opens(app_server: InProcessServer) -> None:
    for username, _name, _what in DEMO_ACCOUNTS:
        client = logged_in_client(app_server, username)
        start = client.get("/", follow_redirects=True)
        assert start.status_code == 200, username
        links = menu_links(page(start))
        assert links, username
        assert str(start.url.path) == links[0][1]  # the start page is the menu's first place
        for label, href in links:
            assert client.get(href).status_code == 200, f"{username}: {label} {href}"


def test_the_administrator_has_no_subjects_link_and_no_loop_back_to_it(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "admin")
    start = page(client.get("/", follow_redirects=True))
    assert "/subjects" not in [href for _label, href in menu_links(start)]
    refused = client.get("/subjects")
    assert refused.status_code == 403
    html = page(refused)
    assert html.xpath("string(//main/h1)") == "Not allowed"
    onward = html.xpath("//main//a/@href")
    assert onward == ["/admin"]  # the administrator's start page, not /subjects again


def test_not_found_and_not_allowed_pages_keep_the_menu_and_log_out(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "coordinator")
    menu = menu_links(page(client.get("/subjects")))
    assert ("Subjects", "/subjects") in menu
    for path, status, title in (
        ("/subjects/987654", 404, "Not found"),
        ("/no/such/page", 404, "Not found"),
        ("/admin", 403, "Not allowed"),
        ("/exports", 403, "Not allowed"),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        html = page(response)
        assert html.xpath("string(//main/h1)") == title, path
        assert menu_links(html) == menu, path
        assert has_log_out(html), path
        assert html.xpath("//main//a/@href") == ["/subjects"], path

    logged_out = page(app_server.client().get("/no/such/page"))
    assert menu_links(logged_out) == [] and not has_log_out(logged_out)
    assert logged_out.xpath("//main//a/@href") == ["/login"]


def test_malformed_ids_get_the_not_found_page_of_a_missing_subject(
    app_server: InProcessServer,
) -> None:
    client = logged_in_client(app_server, "monitor")
    missing = client.get("/subjects/987654")
    assert missing.status_code == 404
    expected = heading_and_message(page(missing))
    assert expected[0] == "Not found"
    for path in (
        "/subjects/abc",
        "/subjects/0",
        "/subjects/-3",
        "/subjects/99999999999999999999999",
        "/subjects/abc/events/SE.SCR/1/forms/F.DM/1",
        "/subjects/1/events/SE.SCR/x/forms/F.DM/1",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        html = page(response)
        assert heading_and_message(html) == expected, path
        assert has_log_out(html), path

    api = client.get("/api/v1/studies/ZM001/subjects/abc")
    assert api.status_code == 422
    assert api.headers["content-type"] == "application/json"
    assert api.json()["errors"][0]["field"] == "path.subject_id"
    unknown = client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Not Found"}

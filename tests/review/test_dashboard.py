"""The dashboard as a data manager and a site user get it over HTTP, on data entered through
the write path: each number is what a user counts on the casebooks, and each links to a list
with as many rows; query ages are counted in the site's days; a site user sees their own site
only; the charts are well-formed inline SVG (both databases)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
from lxml import etree, html
from sqlmodel import Session, col, select

from app.crf.casebook import build_casebook
from app.crf.changes import (
    DataLockSet,
    FormRef,
    QueryAction,
    QueryChange,
    QueryOpen,
    QueryTarget,
)
from app.models import Query, Subject, pk, utcnow
from app.review.query_ages import age_days
from app.site_time import day_start, local_date
from app.study.loader import Study
from tests import factories
from tests.conftest import InProcessServer, logged_in_client
from tests.review.test_sdv import verify
from tests.review.test_signatures import sign

ZONE = "Asia/Shanghai"
"""The demo sites' time zone."""
IC = {"IG.IC": {1: {"ICDAT": "2026-01-10", "ICVER": "2.0", "ICLTFU": "Y"}}}


def test_a_query_is_as_old_as_its_site_counts_days() -> None:
    opened = datetime(2026, 1, 1, 17, 0, tzinfo=UTC)  # 2 January, 01:00 in Shanghai
    now = datetime(2026, 1, 9, 10, 0, tzinfo=UTC)
    assert (now.date() - opened.date()).days == 8
    assert age_days(ZONE, opened, now) == 7
    assert age_days("UTC", opened, now) == 8


def _open_query(session: Session, study: Study, subject: Subject, at: datetime) -> None:
    target = QueryTarget("SE.SCR", 1, "F.IC", 1, "IG.IC", 1, "IT.IC.ICDAT")
    change = QueryOpen(pk(subject), target, f"Opened {at:%Y-%m-%d %H:%M}")
    factories.apply(session, study, change, by="datamanager", now=at)


def _first_query(session: Session, subject: Subject) -> int:
    query = session.exec(
        select(Query).where(Query.subject_id == subject.id).order_by(col(Query.id))
    )
    return pk(query.first())


def _page(client: httpx.Client, path: str) -> html.HtmlElement:
    response = client.get(path)
    assert response.status_code == 200, (path, response.text[:500])
    return html.fromstring(response.text)


def _figure(page: html.HtmlElement, label: str) -> tuple[int, str]:
    """The summary figure `label`: its number and where it links."""
    (link,) = page.xpath(f'//dl[@class="figures"]/div[dt="{label}"]/dd/a')
    return int(link.text_content()), str(link.get("href"))


def _rows(client: httpx.Client, path: str, table: str = "grid") -> int:
    """Rows a list page shows (its first table of class `table`, empty-row excluded)."""
    page = _page(client, path)
    rows = page.xpath(
        f'(//table[contains(@class, "{table}")])[1]/tbody/tr[not(td[@class="empty"])]'
    )
    return len(rows)


def _site_row(page: html.HtmlElement, label: str) -> dict[str, tuple[int, str]]:
    """The sites table's row whose first cell starts with `label`: column -> (number, link)."""
    table = page.xpath('//table[contains(@class, "dashboard-sites")]')[0]
    heads = [th.text_content().strip() for th in table.xpath("./thead/tr/th")]
    row = next(
        tr
        for tr in table.xpath(".//tr[th]")
        if tr.xpath("./th")[0].text_content().startswith(label)
    )
    cells = {}
    for head, cell in zip(heads[1:], row.xpath("./td"), strict=True):
        links = cell.xpath("./a")
        if links:
            cells[head] = (int(links[0].text_content()), str(links[0].get("href")))
    return cells


def test_each_number_is_what_the_casebooks_show_and_links_to_as_many_rows(
    app_server: InProcessServer, zm001: Study
) -> None:
    engine = app_server.app.fastapi.state.engine
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        first = factories.register(session, zm001)
        second = factories.register(session, zm001)
        other = factories.register(session, zm001, site_id=2, by="coordinator2")
        assert factories.save(session, zm001, first, "F.IC", IC, complete=True).saved
        assert factories.save(session, zm001, first, "F.DM", {"IG.DM": {1: {"SEX": "F"}}}).saved
        assert factories.save(session, zm001, second, "F.IC", IC, complete=True).saved
        assert factories.save(session, zm001, other, "F.IC", IC, by="coordinator2").saved
        verify(session, zm001, first, FormRef("SE.SCR", 1, "F.IC", 1))
        # Leukapheresis 10 days ago: the visits timed from it before today are overdue.
        l0 = (local_date(ZONE, now) - timedelta(days=10)).isoformat()
        aph = {"IG.APH": {1: {"APHYN": "Y"}}, "IG.APH.PROC": {1: {"APHDAT": l0}}}
        broken = sign(session, zm001, second)  # the casebook, broken by the next save
        assert factories.save(session, zm001, second, "F.APH", aph, event="SE.APH").saved
        session.refresh(broken)
        assert broken.broken_at is not None
        sign(session, zm001, second)  # signed again: its two forms count
        # Queries at site 01 aged 0, 7 (the first instant of the local day 7 days ago), 8 (the
        # instant before it: a day older in Shanghai, not in UTC), 20 and 40 days.
        seven = day_start(ZONE, local_date(ZONE, now) - timedelta(days=7))
        for at in (now, seven, seven - timedelta(seconds=1), now - timedelta(days=20)):
            _open_query(session, zm001, first, at)
        _open_query(session, zm001, second, now - timedelta(days=40))
        _open_query(session, zm001, other, now - timedelta(days=3))
        _open_query(session, zm001, other, now - timedelta(days=3))
        # One answered (still open: the reviewer acts), one closed (no longer counted).
        answered, closed = _first_query(session, first), _first_query(session, other)
        factories.apply(
            session, zm001, QueryChange(pk(first), answered, 1, QueryAction.ANSWER, "ok")
        )
        close = QueryChange(pk(other), closed, 1, QueryAction.CLOSE, "fine")
        factories.apply(session, zm001, close, by="datamanager")
        # The first subject's consent frozen; the second subject's casebook locked.
        form = {"event_oid": "SE.SCR", "event_repeat": 1, "form_oid": "F.IC", "form_repeat": 1}
        factories.apply(
            session, zm001, DataLockSet(pk(first), "freeze", "review", **form), by="datamanager"
        )
        factories.apply(session, zm001, DataLockSet(pk(second), "lock", "review"), by="datamanager")
        overdue = sum(
            visit.state == "overdue"
            for subject in (first, second, other)
            for visit in build_casebook(session, zm001, subject, local_date(ZONE, now)).visits
        )
    assert overdue >= 1

    manager = logged_in_client(app_server, "datamanager")
    page = _page(manager, "/dashboard")
    expected = {
        "Subjects": 3, "Open queries": 6, "Forms entered": 5, "Complete": 2, "Frozen": 1,
        "Locked": 2, "Verified": 1, "Signed": 2, "Overdue visits": overdue,
    }  # fmt: skip
    for label, count in expected.items():
        shown, link = _figure(page, label)
        assert shown == count, label
        assert _rows(manager, link) == count, (label, link)

    # Site 01 by age: 0 and 7 days in 0-7, 8 days in 8-14, 20 in 15-30, 40 in >30.
    (chart,) = page.xpath('//svg[@id="query-ageing"]')
    svg = etree.fromstring(etree.tostring(chart))  # well-formed on its own
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == (
        "Open queries by age in days: 0-7 days 3; 8-14 days 1; 15-30 days 1; >30 days 1"
    )
    assert [t.text for t in svg.iter("{*}title")][1:] == [
        "0-7 days: 3", "8-14 days: 1", "15-30 days: 1", ">30 days: 1"
    ]  # fmt: skip
    ages = page.xpath('//table[@aria-label="Open queries by age and site"]')[0]
    row = ages.xpath('./tbody/tr[th[starts-with(., "01")]]')[0]
    cells = [(int(a.text_content()), a.get("href")) for a in row.xpath("./td/a")]
    assert [n for n, _ in cells] == [2, 1, 1, 1, 5]
    for count, link in cells:
        assert _rows(manager, link, "query-list") == count, link

    # The list's "older than" filter and its CSV count the same days.
    assert _rows(manager, "/queries?site=01&state=pending&age=8-14", "query-list") == 3
    csv_text = manager.get("/queries.csv?site=01&state=pending").text
    assert sorted(int(row["age_days"]) for row in csv.DictReader(io.StringIO(csv_text))) == [
        0, 7, 8, 20, 40
    ]  # fmt: skip

    site01 = _site_row(page, "01")
    assert {head: n for head, (n, _) in site01.items()} == {
        "Subjects": 2, "Forms entered": 4, "Complete": 2, "Frozen": 1, "Locked": 2,
        "Verified": 1, "Signed": 2, "Open queries": 5, "Overdue visits": overdue,
    }  # fmt: skip
    for head, (count, link) in site01.items():
        assert _rows(manager, link, "query-list" if head == "Open queries" else "grid") == count
    (bar,) = page.xpath(
        '//table[contains(@class, "dashboard-sites")]//tr[th[starts-with(., "01")]]//svg'
    )
    assert etree.fromstring(etree.tostring(bar)).get("aria-label") == (
        "2 of 4 entered forms complete (50%)"
    )

    # Subjects by status and dose level, each linking to the subject list filtered.
    (screening,) = page.xpath('//section[h2="Subjects by status"]//tr[th="Screening"]')
    assert [a.text_content() for a in screening.xpath("./td/a")] == ["2", "1", "3"]
    for link in screening.xpath("./td/a"):
        assert _rows(manager, link.get("href")) == int(link.text_content())
    (none,) = page.xpath(
        '//section[starts-with(h2, "Subjects by dose level")]//tr[th="not assigned"]'
    )
    assert [a.text_content() for a in none.xpath("./td/a")] == ["2", "1", "3"]
    assert _rows(manager, none.xpath("./td/a")[-1].get("href")) == 3
    assert "Dashboard" in [a.text_content() for a in page.xpath('//nav[@class="menu"]/a')]


def test_a_site_user_sees_their_own_site_only(app_server: InProcessServer, zm001: Study) -> None:
    engine = app_server.app.fastapi.state.engine
    with Session(engine, expire_on_commit=False) as session:
        first = factories.register(session, zm001)
        other = factories.register(session, zm001, site_id=2, by="coordinator2")
        assert factories.save(session, zm001, first, "F.IC", IC, complete=True).saved
        assert factories.save(session, zm001, other, "F.IC", IC, by="coordinator2").saved
        _open_query(session, zm001, first, utcnow())
    site = logged_in_client(app_server, "coordinator2")
    page = _page(site, "/dashboard")
    assert "Counts for site 02" in page.text_content()
    rows = page.xpath('//table[contains(@class, "dashboard-sites")]/tbody/tr')
    assert [r.xpath("./th")[0].text_content()[:2] for r in rows] == ["02"]
    assert _figure(page, "Open queries")[0] == 0
    assert _figure(page, "Forms entered")[0] == 1
    assert _figure(page, "Subjects")[0] == 1
    # Another site's lists, asked for by hand, show nothing of it.
    assert _rows(site, "/dashboard/forms?kind=entered&site=01") == 0
    assert _rows(site, "/dashboard/overdue?site=01") == 0
    assert _rows(site, "/subjects?site=01") == 0
    assert _rows(site, "/queries?site=01&state=pending", "query-list") == 0

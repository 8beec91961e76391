"""The escalation page's SVG charts: well-formed, accessible, one mark per infused subject
(DLTs and subjects in their window drawn differently), a rule per board decision."""

from __future__ import annotations

from datetime import date

from lxml import etree

from app.escalation.engine import Outcome
from app.web.escalation_chart import Mark, Rule, escalation_chart, probability_bars

LEVELS = ("DL1", "DL2", "DL3")
SVG = "{http://www.w3.org/2000/svg}"


def test_each_subject_is_a_mark_at_its_level_in_infusion_order() -> None:
    marks = [
        Mark("DL2-1", "DL2", date(2026, 5, 1), Outcome.DLT),
        Mark("DL1-1", "DL1", date(2026, 3, 1), Outcome.NO_DLT),
        Mark("DL1-2", "DL1", date(2026, 3, 8), Outcome.NOT_EVALUABLE),
        Mark("DL2-2 <b>", "DL2", date(2026, 5, 9), Outcome.PENDING),
    ]
    rules = [Rule("escalate", date(2026, 4, 20))]
    svg = etree.fromstring(escalation_chart(LEVELS, marks, rules, chart_id="escalation-chart"))
    assert svg.get("id") == "escalation-chart" and svg.get("role") == "img"
    assert svg.get("aria-label") == (
        "Dose escalation: 4 subjects infused in order, by dose level; 1 with a DLT, "
        "1 in the window; 1 board decisions"
    )
    assert svg.find(f"{SVG}title") is not None
    drawn = svg.xpath("//*[@data-subject]")
    assert [m.get("data-subject") for m in drawn] == ["DL1-1", "DL1-2", "DL2-1", "DL2-2 <b>"]
    assert [m.get("class") for m in drawn] == [
        "mark no-dlt", "mark not-evaluable", "mark dlt", "mark pending",
    ]  # fmt: skip
    assert [m.tag.removeprefix(SVG) for m in drawn] == ["circle", "path", "rect", "circle"]
    x = [float(m.get("cx") or float(m.get("x") or 0) + 7) for m in drawn if m.tag != f"{SVG}path"]
    assert x == sorted(x)
    # DL2 is drawn above DL1 (a smaller y), and the names are escaped text, not markup.
    assert float(drawn[3].get("cy")) < float(drawn[0].get("cy"))
    assert drawn[2].find(f"{SVG}title").text == "DL2-1, DL2, infused 2026-05-01: DLT"
    (rule,) = svg.xpath("//*[@class='decision']")
    assert rule.find(f"{SVG}text").text == "escalate"
    # The rule stands after the two DL1 subjects, before the first DL2 subject.
    line_x = float(rule.find(f"{SVG}line").get("x1"))
    assert float(drawn[0].get("cx")) < line_x < float(drawn[2].get("x"))


def test_no_subject_yet_is_an_empty_chart() -> None:
    svg = etree.fromstring(escalation_chart(LEVELS, [], [], chart_id="c"))
    assert svg.xpath("//*[@data-subject]") == []
    assert [t.text for t in svg.iter(f"{SVG}text")] == ["DL1", "DL2", "DL3"]


def test_the_mtd_bars_say_each_probability() -> None:
    svg = etree.fromstring(probability_bars(LEVELS, [0.1, 0.55, 0.35], chart_id="mtd-chart"))
    assert svg.get("aria-label") == (
        "Probability each level is selected as the MTD: DL1 10%; DL2 55%; DL3 35%"
    )
    heights = [float(r.get("height")) for r in svg.iter(f"{SVG}rect")]
    assert heights[1] > heights[2] > heights[0]
    assert [t.text for t in svg.iter(f"{SVG}title")][1:] == [
        "DL1: 10.0%",
        "DL2: 55.0%",
        "DL3: 35.0%",
    ]

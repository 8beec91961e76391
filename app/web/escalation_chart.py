"""The escalation page's charts as SVG strings, pure: drawn from the numbers the page also
shows as text. Each is one role="img" with an aria-label saying what it shows and a <title>
per mark (a pointer's tooltip); no script draws them. Text is escaped here: the strings are
inserted into the page as they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from app.escalation.engine import Outcome

_SVG = 'xmlns="http://www.w3.org/2000/svg"'


@dataclass(frozen=True)
class Mark:
    """One infused subject: pseudonym, dose level, infusion day and outcome."""

    pseudonym: str
    level: str
    infused_on: date
    outcome: Outcome


@dataclass(frozen=True)
class Rule:
    """A board decision: its kind in words and its date."""

    label: str
    decided_on: date


_OUTCOME_WORDS = {
    Outcome.DLT: "DLT",
    Outcome.NO_DLT: "no DLT",
    Outcome.PENDING: "in the DLT window",
    Outcome.NOT_EVALUABLE: "not evaluable",
    Outcome.NOT_INFUSED: "not infused",
}


def outcome_words(outcome: Outcome) -> str:
    return _OUTCOME_WORDS[outcome]


def escalation_chart(
    levels: Sequence[str], marks: Sequence[Mark], rules: Sequence[Rule], *, chart_id: str
) -> str:
    """Subjects in infusion order (x) against dose level (y, lowest at the bottom): a filled
    circle without DLT, a filled square with one (class `dlt`), a hollow circle in the window
    (class `pending`), a cross when not evaluable. Each board decision is a vertical rule
    before the first subject infused after it, labelled with its kind."""
    ordered = sorted(marks, key=lambda m: m.infused_on)
    left, top, step_x, step_y = 60, 24, 34, 40
    width = max(left + step_x * (len(ordered) + 1) + 10, 480)  # room for the rules' labels
    height = top + step_y * len(levels) + 20
    label = (
        f"Dose escalation: {len(ordered)} subjects infused in order, by dose level; "
        f"{sum(m.outcome == Outcome.DLT for m in ordered)} with a DLT, "
        f"{sum(m.outcome == Outcome.PENDING for m in ordered)} in the window; "
        f"{len(rules)} board decisions"
    )
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart escalation-chart" role="img" '
        f'aria-label="{escape(label)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" {_SVG}>',
        f"<title>{escape(label)}</title>",
    ]

    def y_of(level: str) -> int:
        return top + step_y * (len(levels) - 1 - levels.index(level)) + step_y // 2

    for level in levels:
        y = y_of(level)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}"/>'
            f'<text class="label" x="{left - 8}" y="{y + 4}" text-anchor="end">'
            f"{escape(level)}</text>"
        )
    for rule in rules:
        before = sum(m.infused_on <= rule.decided_on for m in ordered)
        x = left + step_x * before + step_x // 2
        words = f"{rule.label}, {rule.decided_on.isoformat()}"
        parts.append(
            f'<g class="decision"><line x1="{x}" y1="{top - 10}" x2="{x}" y2="{height - 14}">'
            f"<title>{escape(words)}</title></line>"
            f'<text x="{x + 3}" y="{top - 12}" class="rule-label">{escape(rule.label)}</text></g>'
        )
    for index, mark in enumerate(ordered, start=1):
        if mark.level not in levels:
            continue
        x, y = left + step_x * index, y_of(mark.level)
        title = (
            f"<title>{escape(mark.pseudonym)}, {escape(mark.level)}, infused "
            f"{mark.infused_on.isoformat()}: {outcome_words(mark.outcome)}</title>"
        )
        parts.append(_mark(mark.outcome, x, y, title, mark.pseudonym))
    parts.append("</svg>")
    return "".join(parts)


def _mark(outcome: Outcome, x: int, y: int, title: str, pseudonym: str) -> str:
    data = f'data-subject="{escape(pseudonym)}"'
    if outcome == Outcome.DLT:
        return f'<rect class="mark dlt" {data} x="{x - 7}" y="{y - 7}" width="14" height="14">{title}</rect>'
    if outcome == Outcome.NOT_EVALUABLE:
        return (
            f'<path class="mark not-evaluable" {data} '
            f'd="M{x - 6},{y - 6} L{x + 6},{y + 6} M{x - 6},{y + 6} L{x + 6},{y - 6}">{title}</path>'
        )
    kind = "pending" if outcome == Outcome.PENDING else "no-dlt"
    return f'<circle class="mark {kind}" {data} cx="{x}" cy="{y}" r="7">{title}</circle>'


def probability_bars(levels: Sequence[str], chances: Sequence[float], *, chart_id: str) -> str:
    """A bar per level: the probability it is selected as the MTD, in percent."""
    width, height, left, bottom = 80 + 70 * len(levels), 200, 40, 30
    plot = height - bottom - 24
    shown = [f"{level} {chance:.0%}" for level, chance in zip(levels, chances, strict=True)]
    label = f"Probability each level is selected as the MTD: {'; '.join(shown)}"
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" {_SVG}>',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}"/>',
    ]
    for index, (level, chance) in enumerate(zip(levels, chances, strict=True)):
        h = round(plot * chance, 1)
        x = left + 70 * index + 10
        parts.append(
            f'<g class="bar"><rect x="{x}" y="{height - bottom - h}" width="46" height="{h}">'
            f"<title>{escape(level)}: {chance:.1%}</title></rect>"
            f'<text class="value" x="{x + 23}" y="{height - bottom - h - 6}" '
            f'text-anchor="middle">{chance:.0%}</text>'
            f'<text class="label" x="{x + 23}" y="{height - bottom + 18}" '
            f'text-anchor="middle">{escape(level)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)

"""What the escalation page and the board report show, from the study's escalation on a day
(`app.escalation.study_state`): each level's counts and subjects by pseudonym, the board's
decisions newest first, the next cohort's possible outcomes, the chart, and the design's
operating characteristics for rates a user asks for. A subject is named by pseudonym only;
the casebook link is given where the user may see the subject's site."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from markupsafe import Markup
from sqlmodel import Session

from app.access import Access, Permission
from app.checks.subject_data import load_subject_data
from app.escalation.characteristics import Characteristics, operating_characteristics
from app.escalation.decisions import KIND_LABELS, describe
from app.escalation.engine import Outcome
from app.escalation.facts import compile_facts, subject_facts
from app.escalation.gates import DecisionKind
from app.escalation.next_cohort import Possibility, next_cohort
from app.escalation.outcomes import outcome_of, window_end
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import EscalationSubject, StudyEscalation
from app.models import Subject
from app.study.escalation_rules import EscalationRules
from app.study.loader import Study
from app.web.escalation_chart import Mark, Rule, escalation_chart, outcome_words, probability_bars

DEFAULT_RATES = "0.05,0.1,0.25,0.4"


@dataclass(frozen=True)
class Window:
    """Where a subject is in the DLT window on a day."""

    day: int
    """Days since the infusion (day 0), at most the window's length."""
    length: int
    ends: date
    days_left: int | None
    """None once the window is over, or its outcome known early (a DLT, not evaluable)."""
    outcome: Outcome

    @property
    def text(self) -> str:
        """What the casebook says: the day and the days left, or how the window ended."""
        if self.days_left is not None:
            left = "1 day left" if self.days_left == 1 else f"{self.days_left} days left"
            ends = self.ends.isoformat()
            return f"DLT window: day {self.day} of {self.length}, ends {ends} ({left})"
        if self.day < self.length and self.outcome != Outcome.NO_DLT:
            return f"DLT window: {outcome_words(self.outcome)} (it ends {self.ends.isoformat()})"
        return "DLT window completed"


def window_on(length: int, infused_on: date | None, ends: date | None, outcome: Outcome,
              today: date) -> Window | None:  # fmt: skip
    """The window of a subject infused on `infused_on` (None: not infused, no window)."""
    if infused_on is None or ends is None:
        return None
    day = min(max((today - infused_on).days, 0), length)
    left = (ends - today).days if outcome == Outcome.PENDING and today <= ends else None
    return Window(day, length, ends, left, outcome)


def subject_window(session: Session, study: Study, subject: Subject, today: date) -> Window | None:
    """The DLT window of an escalation or expansion subject on `today`, for the casebook;
    None for a subject not at a dose level of either phase, or not infused."""
    rules = study.escalation
    if rules is None or rules.casebook is None or subject.dose_level is None:
        return None
    casebook = rules.casebook
    if subject.phase not in (casebook.escalation_phase, casebook.expansion_phase):
        return None
    compiled = compile_facts(
        casebook.subject_facts, frozenset(f.name for f in study.forms.values())
    )
    oids = [form.oid for name in compiled.forms if (form := study.form_by_name(name))]
    facts = subject_facts(study, load_subject_data(session, study, subject, oids), today)
    if facts.infused_on is None or facts.infused_on > today:
        return None
    ends = window_end(rules, facts.infused_on)
    outcome = outcome_of(rules, facts, today)
    return window_on(rules.window_days, facts.infused_on, ends, outcome, today)


def subject_row(state: StudyEscalation, entry: EscalationSubject, access: Access) -> dict[str, Any]:
    infused_on = entry.facts.infused_on
    return {
        "pseudonym": entry.pseudonym, "level": entry.level, "expansion": entry.expansion,
        "infused_on": infused_on, "outcome": outcome_words(entry.outcome),
        "dlt": entry.outcome == Outcome.DLT, "dlt_onsets": entry.facts.dlt_onsets,
        "window": window_on(state.rules.window_days, infused_on, entry.window_end,
                            entry.outcome, state.today),
        "link": f"/subjects/{entry.subject.id}"
        if access.can(Permission.VIEW_SUBJECTS, entry.subject.site_id) else None,
    }  # fmt: skip


def decision_row(record: BoardDecisionRecord) -> dict[str, Any]:
    return {
        "record": record,
        "what": describe(record),
        "kind_label": KIND_LABELS[DecisionKind(record.kind)],
    }


def escalation_context(state: StudyEscalation, access: Access) -> dict[str, Any]:
    """The parts of the page and the report that come from the escalation (module docstring)."""
    subjects = [subject_row(state, s, access) for s in state.subjects]
    decision, recommendation = state.decision, state.recommendation
    level = decision.level if decision.level in state.engine.counts else None
    possibilities: list[Possibility] = next_cohort(state.engine, level) if level else []
    marks = [
        Mark(s.pseudonym, s.level, s.facts.infused_on, s.outcome)
        for s in state.subjects
        if s.facts.infused_on is not None and not s.expansion
    ]
    rules = [Rule(str(d.kind).replace("_", " "), d.decided_on) for d in state.decisions]
    chart = escalation_chart(state.engine.levels, marks, rules, chart_id="escalation-chart")
    return {
        "state": state, "today": state.today, "decision": decision,
        "recommendation": recommendation if recommendation != decision else None,
        "levels": [
            (code, state.engine.counts[code], [s for s in subjects if s["level"] == code])
            for code in state.engine.levels
        ],
        "in_window": [s for s in subjects if s["window"] and s["window"].days_left is not None],
        "dlt_subjects": [s for s in subjects if s["dlt"]],
        "history": [decision_row(d) for d in reversed(state.decisions)],
        "next_level": level, "possibilities": possibilities,
        "chart": Markup(chart),  # noqa: S704 (escalation_chart escapes every text it writes)
    }  # fmt: skip


def parse_rates(text: str, levels: tuple[str, ...]) -> tuple[float, ...]:
    """True DLT rates, one per level, comma-separated; raises ValueError naming a bad value."""
    values = [part.strip() for part in text.split(",")]
    rates = []
    for value in values:
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a number: give rates such as 0.1 or 0.25."
            ) from None
        if not 0 <= rate <= 1:
            raise ValueError(f"{value} is not a probability: give each rate from 0 to 1.")
        rates.append(rate)
    if len(rates) != len(levels):
        raise ValueError(
            f"Give {len(levels)} rates, one per level ({', '.join(levels)}), not {len(rates)}."
        )
    return tuple(rates)


@lru_cache(maxsize=32)
def _characteristics(
    rules: EscalationRules, levels: tuple[str, ...], rates: tuple[float, ...]
) -> Characteristics:
    """Computed once per rates (about half a second over every path of four levels)."""
    return operating_characteristics(rules, levels, rates)


def characteristics_context(study: Study, text: str) -> dict[str, Any]:
    """The operating characteristics for the rates in `text`, or the error about them."""
    levels = tuple(level.code for level in study.info.dose_levels)
    assert study.escalation is not None
    try:
        rates = parse_rates(text, levels)
    except ValueError as error:
        return {"rates_text": text, "rates_error": str(error), "oc": None}
    found = _characteristics(study.escalation, levels, rates)
    bars = probability_bars(
        levels, [found.recommended[level] for level in levels], chart_id="mtd-chart"
    )
    chart = Markup(bars)  # noqa: S704 (probability_bars escapes every text it writes)
    return {"rates_text": text, "rates_error": None, "oc": found, "oc_chart": chart}

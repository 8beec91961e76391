"""A subject's outcome from dates and doses (spec §2.3; §2.5 rows 17, 18, 19, 23) and the
board's selection of expansion levels checked against the engine (rows 24, 25)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.escalation.board import selection_refusal
from app.escalation.engine import Outcome, State
from app.escalation.outcomes import SubjectFacts, outcome_of, window_end
from app.escalation.simulate import simulate
from app.study.loader import load_study
from tests.conftest import FORMS

ZM001_RULES = load_study(FORMS).escalation
assert ZM001_RULES is not None
RULES = ZM001_RULES
LEVELS = ("DL1", "DL2", "DL3", "DL4")
D0 = date(2026, 3, 1)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def test_the_window_runs_from_day_0_to_day_28_inclusive() -> None:
    assert window_end(RULES, D0) == day(28)
    dlt_on_28 = SubjectFacts(D0, 100, [day(28)])  # row 17: counts
    assert outcome_of(RULES, dlt_on_28, day(28)) == Outcome.DLT
    on_29 = SubjectFacts(D0, 100, [day(29)])  # row 18: not a DLT
    assert outcome_of(RULES, on_29, day(28)) == Outcome.PENDING
    assert outcome_of(RULES, on_29, day(29)) == Outcome.NO_DLT


@pytest.mark.parametrize(
    ("facts", "today", "outcome"),
    [
        (SubjectFacts(None), day(40), Outcome.NOT_INFUSED),  # leukapheresed only
        (SubjectFacts(D0, 60), day(40), Outcome.NOT_EVALUABLE),  # row 19: 60% of target
        (SubjectFacts(D0, 80), day(40), Outcome.NO_DLT),  # within 20%
        (SubjectFacts(D0, 121), day(40), Outcome.NOT_EVALUABLE),
        (SubjectFacts(D0, 100, [day(3), day(9)]), day(10), Outcome.DLT),  # row 23: once
        (SubjectFacts(D0, 100, [day(5)], ended_on=day(10)), day(40), Outcome.DLT),  # row 14
        (SubjectFacts(D0, 100, ended_on=day(10)), day(40), Outcome.NOT_EVALUABLE),  # row 13
        (SubjectFacts(D0, 100, ended_on=day(35)), day(40), Outcome.NO_DLT),
        (SubjectFacts(D0), day(27), Outcome.PENDING),
    ],
)
def test_each_subject_gets_the_outcome_of_the_spec(
    facts: SubjectFacts, today: date, outcome: Outcome
) -> None:
    assert outcome_of(RULES, facts, today) == outcome


def test_a_subject_with_two_dlt_events_counts_once_at_the_level() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: NN").escalation
    twice = outcome_of(RULES, SubjectFacts(D0, 100, [day(3), day(9)]), day(40))
    escalation.record("S3", "DL1", twice)
    assert escalation.counts["DL1"].dlt == 1


def test_the_board_selects_one_or_two_cleared_levels_not_above_the_mtd() -> None:
    mtd = simulate(RULES, LEVELS, "DL1: NNN; DL2: NNT NNN; DL3: NTT").escalation
    assert mtd.current().state == State.MTD_DECLARED
    assert selection_refusal(mtd, ["DL2"]) is None
    assert selection_refusal(mtd, ["DL1", "DL2"]) is None
    assert selection_refusal(mtd, ["DL3"]) == (  # row 24
        "DL3 is EXCEEDED: only a cleared level can be expanded."
    )
    assert selection_refusal(mtd, ["DL1", "DL2", "DL2"]) is None  # a level named twice is one
    three = simulate(RULES, LEVELS, "DL1: NNN; DL2: NNN; DL3: NNN; DL4: NNN NNN").escalation
    assert selection_refusal(three, ["DL2", "DL3", "DL4"]) == (  # row 25
        "Select 1 to 2 levels to expand, not 3."
    )
    assert selection_refusal(three, ["DL4"]) is None  # top dose tolerated: any cleared level
    running = simulate(RULES, LEVELS, "DL1: NNN").escalation
    refusal = selection_refusal(running, ["DL1"])
    assert refusal is not None and "once escalation has ended" in refusal


def test_the_mtd_can_be_selected_and_a_level_the_study_lacks_cannot() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: NNN; DL2: NNN; DL3: TTN; DL2: NNN").escalation
    assert escalation.current().level == "DL2"
    assert selection_refusal(escalation, ["DL2"]) is None
    assert selection_refusal(escalation, ["DL9"]) == "DL9 is not a dose level of the study."

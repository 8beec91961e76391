"""The next cohort's possible outcomes, each with the engine's decision; the engine itself is
left unchanged."""

from __future__ import annotations

from app.escalation.engine import LevelStatus, State
from app.escalation.next_cohort import next_cohort
from app.escalation.simulate import simulate
from tests.escalation.test_scenarios import LEVELS, RULES


def test_each_count_of_dlts_in_a_first_cohort_leads_to_its_decision() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: NNN").escalation
    before = escalation.current()
    found = next_cohort(escalation, "DL2")
    assert [(p.size, p.dlts) for p in found] == [(3, 0), (3, 1), (3, 2), (3, 3)]
    assert [(p.decision.state, p.decision.level) for p in found] == [
        (State.ESCALATING, "DL3"), (State.ESCALATING, "DL2"),
        (State.DEESCALATING, "DL1"), (State.DEESCALATING, "DL1"),
    ]  # fmt: skip
    assert found[1].decision.reason == (
        "DL2: 1 DLT in 3 evaluable: treat DL2 to 6 evaluable subjects (3 more to enrol)."
    )
    assert found[2].decision.reason.startswith("DL2: 2 DLTs in 3 evaluable: DL2 exceeds")
    assert escalation.current() == before
    assert escalation.counts["DL2"].status == LevelStatus.OPEN_A
    assert escalation.counts["DL2"].infused == 0


def test_an_expanded_level_has_its_three_remaining_places() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: NNT").escalation
    found = next_cohort(escalation, "DL1")
    assert [p.dlts for p in found] == [0, 1, 2, 3]
    assert found[0].decision.state == State.ESCALATING and found[0].decision.level == "DL2"
    assert found[1].decision.state == State.STOPPED_NO_TOLERABLE_DOSE


def test_a_level_whose_cohort_is_in_its_window_has_no_next_cohort() -> None:
    escalation = simulate(RULES, LEVELS, "DL1: PPP").escalation
    assert next_cohort(escalation, "DL1") == []

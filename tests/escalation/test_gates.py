"""The infusion gates (spec §2.5 rows 26, 29, 30; EC030-EC032) on the engine's state and the
board's decisions."""

from __future__ import annotations

from datetime import date

from app.escalation.engine import Escalation, Outcome
from app.escalation.gates import BoardDecision, DecisionKind, infusion_refusal, opened_on
from app.escalation.simulate import simulate
from tests.escalation.test_scenarios import LEVELS, RULES

OPENED = BoardDecision(DecisionKind.ESCALATE, ("DL2",), date(2026, 5, 10))


def at_dl2() -> Escalation:
    return simulate(RULES, LEVELS, "DL1: NNN").escalation


def test_an_infusion_before_the_decision_that_opened_the_level_is_refused() -> None:
    escalation = at_dl2()
    assert infusion_refusal(escalation, [], "DL2", date(2026, 5, 11), []) == (
        "No board decision has opened DL2 yet (EC030)."
    )
    assert infusion_refusal(escalation, [OPENED], "DL2", date(2026, 5, 9), []) == (  # row 29
        "DL2 was opened by the board on 2026-05-10; an infusion on 2026-05-09 is before that "
        "decision (EC030)."
    )
    assert infusion_refusal(escalation, [OPENED], "DL2", date(2026, 5, 10), []) is None
    assert opened_on([OPENED, BoardDecision(DecisionKind.PAUSE, ("DL2",), date(2026, 5, 1))],
                     "DL2") == date(2026, 5, 10)  # fmt: skip


def test_the_second_subject_waits_for_the_sentinels_stagger_days() -> None:
    escalation = at_dl2()
    escalation.record("sentinel", "DL2", Outcome.PENDING)
    sentinel = [date(2026, 5, 11)]
    refusal = infusion_refusal(escalation, [OPENED], "DL2", date(2026, 5, 17), sentinel)
    assert refusal == (  # row 30
        "The first subject at DL2 was infused on 2026-05-11; the next may be infused from "
        "2026-05-18, 7 days after (EC031)."
    )
    assert infusion_refusal(escalation, [OPENED], "DL2", date(2026, 5, 18), sentinel) is None


def test_only_an_open_level_with_room_in_its_cohort_infuses() -> None:
    escalation = at_dl2()
    refusal = infusion_refusal(escalation, [OPENED], "DL3", date(2026, 6, 1), [])
    assert refusal == "DL3 is not open for infusion (it is CLOSED; EC032)."
    assert infusion_refusal(escalation, [], "DL1", date(2026, 6, 1), []) == (
        "DL1 is not open for infusion (it is CLEARED; EC032)."
    )
    for subject in ("a", "b", "c"):
        escalation.record(subject, "DL2", Outcome.PENDING)
    refusal = infusion_refusal(
        escalation, [OPENED], "DL2", date(2026, 6, 1), [date(2026, 5, 11)] * 3
    )
    assert refusal == (
        "DL2's cohort of 3 is full (0 evaluable, 3 in their window): wait for their outcomes "
        "(EC032)."
    )
    escalation.record("c", "DL2", Outcome.NOT_EVALUABLE)  # a place for a replacement
    assert (
        infusion_refusal(escalation, [OPENED], "DL2", date(2026, 6, 1), [date(2026, 5, 11)] * 3)
        is None
    )


def test_the_cap_a_stop_and_a_pause_refuse_infusions() -> None:
    thirty = "DL1: " + " ".join(["NNN"] * 5) + "; DL2: " + " ".join(["NNN"] * 5)  # row 26
    capped = simulate(RULES, LEVELS, thirty).escalation
    assert infusion_refusal(capped, [], "DL1", date(2026, 6, 1), []) == (
        "The study has infused its cap of 30 subjects: enrolment is closed."
    )
    stopped = simulate(RULES, LEVELS, "DL1: TT").escalation
    refusal = infusion_refusal(stopped, [], "DL1", date(2026, 6, 1), [])
    assert refusal is not None and refusal.startswith("The escalation has stopped:")
    paused = simulate(RULES, LEVELS, "DL1: NNN; DL2: P; DL1: T").escalation
    refusal = infusion_refusal(paused, [OPENED], "DL2", date(2026, 6, 1), [date(2026, 5, 11)])
    assert refusal is not None and refusal.startswith("Infusions above DL1 are paused:")
    assert infusion_refusal(paused, [], "DL1", date(2026, 6, 1), []) is None  # DL1 expands

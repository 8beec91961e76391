"""The spec's proposed expansion rule (§2.4): once the board has selected a level, a DLT rate
of 1 in 3 or more over its evaluable subjects (escalation and expansion), with the full
cohort evaluable, asks the board to review its expansion. Pure: the state is built from
subjects' facts and a recorded selection, no database."""

from __future__ import annotations

from datetime import date, timedelta

from app.escalation.engine import Escalation, Outcome, State
from app.escalation.outcomes import SubjectFacts
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import EscalationSubject, StudyEscalation
from app.models import Subject
from tests.conftest import bound_zm001

TODAY = date(2026, 9, 1)


LETTERS = {"N": Outcome.NO_DLT, "T": Outcome.DLT, "P": Outcome.PENDING}


def subject(number: int, letter: str) -> EscalationSubject:
    """The DL3 subject `number` (escalation for the first 3, then expansion)."""
    row = Subject(study_id=1, site_id=1, subject_key=f"01-{number:03d}", status="infused")
    facts = SubjectFacts(TODAY - timedelta(days=60))
    return EscalationSubject(row, f"DL3-{number}", "DL3", number > 3, facts, LETTERS[letter], TODAY)


def state(outcomes: str) -> StudyEscalation:
    """DL3 selected for expansion, with one subject per letter of `outcomes` (N, T, P)."""
    study = bound_zm001()
    assert study.escalation is not None and study.escalation.casebook is not None
    subjects = tuple(subject(n, letter) for n, letter in enumerate(outcomes, start=1))
    selection = BoardDecisionRecord(
        study_id=1, kind="select", levels="DL3", decided_on=TODAY - timedelta(days=90),
        rationale="DL3 expands", engine_state="TOP_DOSE_TOLERATED", engine_reason="",
        signer_id=1, signer_name="Zhao Lei", meaning="I record it",
    )  # fmt: skip
    engine = Escalation(study.escalation, ("DL1", "DL2", "DL3", "DL4"))
    return StudyEscalation(
        study.escalation, study.escalation.casebook, TODAY, engine, subjects, (selection,)
    )


def test_two_dlts_in_six_evaluable_ask_the_board_to_review_the_expansion() -> None:
    decision = state("NNNTTNP").decision
    assert decision.state == State.EXPANSION
    assert decision.reason.endswith(
        "DL3 has 2 DLTs in 6 evaluable subjects (at least 1 in 3): the board should review "
        "its expansion."
    )


def test_fewer_than_six_evaluable_or_a_lower_rate_ask_nothing() -> None:
    assert "review" not in state("NNNTTP").decision.reason  # 2 in 5
    assert "review" not in state("NNNNNNTP").decision.reason  # 1 in 7

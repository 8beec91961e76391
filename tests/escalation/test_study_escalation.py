"""The escalation read from casebooks entered through the write path, on both databases: the
state on a day, the gates at enrolment (EC024) and infusion (EC030-EC032), and the board's
decisions checked against the rules (EC060), signed and audited."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.access import AccessDenied, load_access
from app.crf.changes import StatusRefused
from app.db import unit_of_work
from app.demo import DEMO_PASSWORD
from app.escalation.decisions import (
    DecisionRefused,
    DecisionRequest,
    DecisionWrongPassword,
    record_decision,
)
from app.escalation.engine import LevelStatus, State
from app.escalation.gates import DecisionKind
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import study_escalation
from app.models import AuditRecord, Subject
from app.study.loader import Study
from tests import factories
from tests.escalation.casebooks import dlt, enrol, infuse, infused, saved

D0 = date(2026, 3, 2)
"""The DL1 sentinel's infusion; the others follow 7 and 8 days later."""
CLEARED = D0 + timedelta(days=8 + 29)
"""The day after the last DL1 window's last day (day 28)."""


@pytest.fixture
def session(demo_engine: Engine) -> Iterator[Session]:
    with Session(demo_engine, expire_on_commit=False) as session:
        yield session


def dl1_cohort(session: Session, study: Study) -> list[Subject]:
    return [infused(session, study, "DL1", D0 + timedelta(days=offset)) for offset in (0, 7, 8)]


def decide(
    session: Session,
    study: Study,
    kind: DecisionKind,
    levels: tuple[str, ...],
    on: date,
    *,
    by: str = "sponsor",
    password: str = DEMO_PASSWORD,
    override: str | None = None,
) -> BoardDecisionRecord:
    with unit_of_work(session):
        access = load_access(session, factories.user(session, by), study.id)
        request = DecisionRequest(
            kind, levels, on, "The board reviewed the DLT data.", password,
            minutes_reference="SRC-01", override_reason=override,
        )  # fmt: skip
        now = datetime(on.year, on.month, on.day, 12, tzinfo=UTC)
        return record_decision(session, study, access, request, source="test", now=now)


def test_a_cohort_in_its_windows_waits_then_the_rules_recommend_escalation(
    session: Session, zm001: Study
) -> None:
    dl1_cohort(session, zm001)
    waiting = study_escalation(session, zm001, CLEARED - timedelta(days=1))
    assert waiting.engine.counts["DL1"].pending == 1
    assert waiting.decision.reason == (
        "DL1: 0 DLTs in 2 evaluable, 1 in the 28-day window: wait for the window to close "
        "before deciding."
    )
    [sentinel, *_] = waiting.subjects
    assert (sentinel.pseudonym, sentinel.window_end) == ("DL1-1", D0 + timedelta(days=28))
    last = waiting.subjects[-1]
    assert last.days_remaining(CLEARED - timedelta(days=1)) == 0  # its window's last day

    cleared = study_escalation(session, zm001, CLEARED)
    assert (cleared.decision.state, cleared.decision.level) == (State.ESCALATING, "DL2")
    assert cleared.engine.counts["DL1"].status == LevelStatus.CLEARED
    assert cleared.decision.reason == (
        "DL1: 0 DLTs in 3 evaluable: DL1 is cleared; escalate to DL2 once the board decides."
    )


def test_enrolment_and_infusion_wait_for_the_board_then_open_the_level(
    session: Session, zm001: Study
) -> None:
    dl1_cohort(session, zm001)
    with pytest.raises(StatusRefused, match=r"No board decision has opened DL2 yet \(EC024"):
        enrol(session, zm001, "DL2", CLEARED)
    decision = decide(session, zm001, DecisionKind.ESCALATE, ("DL2",), CLEARED + timedelta(days=3))
    assert (decision.override, decision.engine_state, decision.engine_level) == (
        False, "ESCALATING", "DL2",
    )  # fmt: skip
    with pytest.raises(StatusRefused, match=r"DL1 is not open for enrolment \(it is CLEARED"):
        enrol(session, zm001, "DL1", CLEARED + timedelta(days=4))
    with pytest.raises(StatusRefused, match=r"DL3 is not open for enrolment \(it is CLOSED"):
        enrol(session, zm001, "DL3", CLEARED + timedelta(days=4))

    sentinel = enrol(session, zm001, "DL2", CLEARED + timedelta(days=4))
    early = infuse(session, zm001, sentinel, CLEARED + timedelta(days=2))
    assert early.evaluation.errors[("IG.EX", 1, "EXSTDTM")] == (
        f"DL2 was opened by the board on {decision.decided_on.isoformat()}; an infusion on "
        f"{(CLEARED + timedelta(days=2)).isoformat()} is before that decision (EC030)."
    )
    day = CLEARED + timedelta(days=40)
    saved(infuse(session, zm001, sentinel, day))
    second = enrol(session, zm001, "DL2", CLEARED + timedelta(days=5))
    staggered = infuse(session, zm001, second, day + timedelta(days=6))
    assert "the next may be infused from" in staggered.evaluation.errors[("IG.EX", 1, "EXSTDTM")]
    saved(infuse(session, zm001, second, day + timedelta(days=7)))
    # correcting the sentinel's infusion time on the same day passes the gates again
    saved(infuse(session, zm001, sentinel, day))


def test_a_dlt_in_the_window_expands_the_level_and_the_assessment_can_set_it_aside(
    session: Session, zm001: Study
) -> None:
    subjects = dl1_cohort(session, zm001)
    dlt(session, zm001, subjects[1], D0 + timedelta(days=7 + 10))
    state = study_escalation(session, zm001, CLEARED)
    assert state.engine.counts["DL1"].status == LevelStatus.OPEN_B
    assert state.decision.reason == (
        "DL1: 1 DLT in 3 evaluable: treat DL1 to 6 evaluable subjects (3 more to enrol)."
    )
    assessment = {
        "DLTEVAL": "N", "DLTNEVRS": "OTHER", "DLTNEVSP": "Prohibited medication", "DLTYN": "N",
    }  # fmt: skip
    saved(
        factories.save(
            session, zm001, subjects[1], "F.DLT", {"IG.DLT": {1: assessment}}, event="SE.D28",
            by="investigator",
        )
    )  # fmt: skip
    assert study_escalation(session, zm001, CLEARED).decision.reason == (
        "DL1: 0 DLTs in 2 evaluable (1 not evaluable, replaced): enrol 1 more at DL1."
    )


def test_a_decision_the_rules_do_not_support_needs_a_signed_override(
    session: Session, zm001: Study
) -> None:
    dl1_cohort(session, zm001)
    on = CLEARED + timedelta(days=1)
    with pytest.raises(DecisionRefused) as refused:
        decide(session, zm001, DecisionKind.ESCALATE, ("DL3",), on)
    assert str(refused.value) == (
        "The rules do not support this decision (escalate to the next level (DL3); EC060). They "
        "say ESCALATING at DL2: DL1: 0 DLTs in 3 evaluable: DL1 is cleared; escalate to DL2 once "
        "the board decides. To record it anyway, give the reason for overriding the rules; it is "
        "signed with the decision."
    )
    assert session.exec(select(BoardDecisionRecord)).all() == []

    forced = decide(
        session, zm001, DecisionKind.ESCALATE, ("DL3",), on, override="Sponsor's safety review."
    )
    assert (forced.override, forced.override_reason) == (True, "Sponsor's safety review.")
    assert (forced.signer_name, forced.counts["DL1"]["status"]) == ("Zhao Lei", "CLEARED")
    enrol(session, zm001, "DL3", on)  # the board's decision opens the level
    audit = session.exec(
        select(AuditRecord).where(col(AuditRecord.action) == "board_decision")
    ).one()
    assert (audit.username, audit.reason) == ("sponsor", "The board reviewed the DLT data.")
    assert audit.new_value == f"Escalate to the next level DL3, {on.isoformat()}"
    assert audit.details is not None and "overriding the rules" in audit.details


@pytest.mark.parametrize(
    ("kind", "levels", "message"),
    [
        (DecisionKind.SELECT, ("DL1",), "Expansion levels are selected once escalation has ended"),
        (DecisionKind.RESUME, (), "Infusions are not paused by the board"),
        (DecisionKind.ESCALATE, ("DL2", "DL3"), "Name one dose level for this decision, not 2."),
        (DecisionKind.PAUSE, ("DL2",), "This decision concerns every level: name none."),
        (DecisionKind.EXPAND, ("DL9",), "DL9 is not a dose level of the study"),
    ],
)
def test_what_the_rules_forbid_is_refused_even_with_an_override(
    session: Session, zm001: Study, kind: DecisionKind, levels: tuple[str, ...], message: str
) -> None:
    with pytest.raises(DecisionRefused, match=message):
        decide(session, zm001, kind, levels, D0, override="The board insists.")


def test_the_board_pauses_and_resumes_infusions(session: Session, zm001: Study) -> None:
    first = infused(session, zm001, "DL1", D0)
    decide(session, zm001, DecisionKind.PAUSE, (), D0 + timedelta(days=2))
    paused = study_escalation(session, zm001, D0 + timedelta(days=3))
    assert paused.decision.state == State.PAUSED_REVIEW
    second = enrol(session, zm001, "DL1", D0 - timedelta(days=20))
    refused = infuse(session, zm001, second, D0 + timedelta(days=9))
    assert refused.evaluation.errors[("IG.EX", 1, "EXSTDTM")].startswith(
        f"The board paused infusions on {(D0 + timedelta(days=2)).isoformat()}"
    )
    with pytest.raises(DecisionRefused, match="the last decision is dated"):
        decide(session, zm001, DecisionKind.RESUME, (), D0 + timedelta(days=1))
    decide(session, zm001, DecisionKind.RESUME, (), D0 + timedelta(days=8))
    saved(infuse(session, zm001, second, D0 + timedelta(days=9)))
    assert first.dose_level == "DL1"


def test_a_wrong_password_or_another_role_records_nothing(session: Session, zm001: Study) -> None:
    with pytest.raises(DecisionWrongPassword):
        decide(session, zm001, DecisionKind.PAUSE, (), D0, password="not-it")
    with pytest.raises(AccessDenied):
        decide(session, zm001, DecisionKind.PAUSE, (), D0, by="datamanager")
    assert session.exec(select(BoardDecisionRecord)).all() == []


def test_the_cap_of_infused_subjects_closes_enrolment(session: Session, zm001: Study) -> None:
    rules = zm001.escalation
    assert rules is not None
    capped = zm001.escalation.model_copy(update={"max_infused": 2}) if zm001.escalation else None
    study = _with_rules(zm001, capped)
    infused(session, study, "DL1", D0)
    infused(session, study, "DL1", D0 + timedelta(days=7))
    third = enrol(session, study, "DL1", D0 - timedelta(days=20))
    refused = infuse(session, study, third, D0 + timedelta(days=8))
    assert refused.evaluation.errors[("IG.EX", 1, "EXSTDTM")] == (
        "The study has infused its cap of 2 subjects: enrolment is closed (EC032)."
    )


def _with_rules(study: Study, rules: object) -> Study:
    from dataclasses import replace

    return replace(study, escalation=rules)


def test_two_sites_infusing_the_last_place_at_once_cannot_both_take_it(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        infused(session, zm001, "DL1", D0)
        infused(session, zm001, "DL1", D0 + timedelta(days=7))
        candidates = [
            enrol(session, zm001, "DL1", D0 - timedelta(days=20), site_id=site) for site in (1, 2)
        ]

    def infuse_at(index: int) -> bool:
        with Session(demo_engine, expire_on_commit=False) as own:
            subject = own.get(Subject, candidates[index].id)
            assert subject is not None
            return infuse(own, zm001, subject, D0 + timedelta(days=8), site_id=index + 1).saved

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(infuse_at, (0, 1)))
    assert sorted(outcomes) == [False, True]
    with Session(demo_engine) as session:
        state = study_escalation(session, zm001, D0 + timedelta(days=9))
        assert (state.engine.counts["DL1"].infused, state.engine.counts["DL1"].pending) == (3, 3)


def test_a_dlt_on_the_infusion_day_counts(session: Session, zm001: Study) -> None:
    sentinel = infused(session, zm001, "DL1", D0)
    dlt(session, zm001, sentinel, D0)
    counts = study_escalation(session, zm001, D0).engine.counts["DL1"]
    assert (counts.status, counts.dlt, counts.pending) == (LevelStatus.OPEN_B, 1, 0)

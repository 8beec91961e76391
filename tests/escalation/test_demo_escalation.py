"""The demo's dose escalation as the sponsor and the sites find it: a 3+3 from DL1 to DL4, the
top dose confirmed with 6, the board's decisions signed by the sponsor, the expansion at DL3."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.audit import AuditAction
from app.crf import reads
from app.crf.changes import FormRef, StatusRefused
from app.demo import SCENARIOS, DemoTooLarge, load_demo
from app.demo_escalation import volume_study
from app.escalation.decisions import DEFAULT_MEANING
from app.escalation.engine import LevelStatus, State
from app.escalation.records import BoardDecisionRecord
from app.escalation.study_state import study_escalation
from app.models import AuditRecord, Subject, utcnow
from app.study.loader import LOG_EVENT_OID, Study
from tests import factories


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_demo_tells_a_3_plus_3_the_board_decided_step_by_step(
    engine: Engine, zm001: Study
) -> None:
    assert load_demo(engine, zm001, subjects=len(SCENARIOS))
    today = utcnow().date()
    with Session(engine, expire_on_commit=False) as session:
        state = study_escalation(session, zm001, today)
        assert (state.decision.state, state.decision.level) == (State.EXPANSION, "DL3")
        counts = {
            level: (c.status, c.infused, c.evaluable, c.dlt, c.pending)
            for level, c in state.engine.counts.items()
        }
        assert counts == {
            "DL1": (LevelStatus.CLEARED, 3, 3, 0, 0),
            "DL2": (LevelStatus.CLEARED, 3, 3, 0, 0),
            "DL3": (LevelStatus.CLEARED, 3, 3, 0, 0),
            "DL4": (LevelStatus.CLEARED, 6, 6, 0, 0),
        }
        assert (state.infused, state.expansion_infused("DL3")) == (18, 3)

        decisions = session.exec(
            select(BoardDecisionRecord).order_by(col(BoardDecisionRecord.id))
        ).all()
        assert [(d.kind, d.levels, (today - d.decided_on).days) for d in decisions] == [
            ("escalate", "DL2", 420),
            ("escalate", "DL3", 318),
            ("escalate", "DL4", 216),
            ("expand", "DL4", 114),
            ("declare_mtd", "DL4", 76),
            ("select", "DL3", 76),
        ]
        sponsor = factories.user(session, "sponsor")
        assert {(d.signer_id, d.signer_name, d.meaning, d.override) for d in decisions} == {
            (sponsor.id, "Zhao Lei", DEFAULT_MEANING, False)
        }
        # What the rules said when each was recorded: the board followed them.
        assert [d.engine_state for d in decisions] == [
            "ESCALATING", "ESCALATING", "ESCALATING", "ESCALATING",
            "TOP_DOSE_TOLERATED", "TOP_DOSE_TOLERATED",
        ]  # fmt: skip
        audited = session.exec(
            select(AuditRecord.username).where(AuditRecord.action == AuditAction.BOARD_DECISION)
        ).all()
        assert audited == ["sponsor"] * 6

        # A site cannot enrol at a cleared escalation level today, only in the expansion.
        subject = session.exec(select(Subject).where(Subject.status == "screening")).one()
        day = reads.site_today(session, subject, utcnow())
        criteria = {n: {"IEORRES": "Y" if n <= 11 else "N"} for n in range(1, 25)}
        decision = {"ELIGYN": "Y", "ENRLDAT": day.isoformat()}
        eligible = factories.save(
            session, zm001, subject, "F.IE", {"IG.IE.IECRIT": criteria, "IG.IE": {1: decision}},
            complete=True, by="investigator2",
        )  # fmt: skip
        assert eligible.saved, eligible.evaluation.errors
        with pytest.raises(StatusRefused, match=r"DL2 is not open for enrolment .*EC024"):
            factories.move(
                session, zm001, subject, "enrolled", day, dose_level="DL2", phase="ESCALATION",
                by="investigator2",
            )  # fmt: skip
        factories.move(
            session, zm001, subject, "enrolled", day, dose_level="DL3", phase="EXPANSION",
            by="investigator2",
        )  # fmt: skip
        session.refresh(subject)
        assert (subject.status, subject.dose_level, subject.phase) == (
            "enrolled", "DL3", "EXPANSION",
        )  # fmt: skip


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_demo_larger_than_the_story_is_for_volume_only(engine: Engine, zm001: Study) -> None:
    with pytest.raises(DemoTooLarge, match=f"has {len(SCENARIOS)} subjects, not 30"):
        load_demo(engine, zm001, subjects=30)
    with Session(engine) as session:
        assert session.exec(select(Subject)).all() == []
    # Without the escalation's casebook nothing gates the write path: any number builds,
    # and no board decision is recorded.
    assert load_demo(engine, volume_study(zm001), subjects=len(SCENARIOS) + 2)
    with Session(engine) as session:
        assert len(session.exec(select(Subject)).all()) == len(SCENARIOS) + 2
        assert session.exec(select(BoardDecisionRecord)).all() == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_adverse_event_marked_as_a_dlt_is_read_from_the_ae_log(
    engine: Engine, zm001: Study
) -> None:
    """The casebook's `dlt_onsets` reads the AE log's rows: an AE the investigator marks as
    meeting the DLT criteria counts from its onset, before the DLT assessment at D28."""
    in_window = next(i for i, s in enumerate(SCENARIOS) if s.days_ago == 9)
    load_demo(engine, zm001, subjects=in_window + 1)
    today = utcnow().date()
    with Session(engine, expire_on_commit=False) as session:
        subject = session.exec(select(Subject).order_by(col(Subject.id).desc())).first()
        assert subject is not None and subject.phase == "EXPANSION"

        def onsets() -> tuple[str, ...]:
            state = study_escalation(session, zm001, today)
            (found,) = [s for s in state.subjects if s.subject.id == subject.id]
            return tuple(day.isoformat() for day in found.facts.dlt_onsets)

        assert onsets() == ()
        form = zm001.form("F.AE")
        stored = reads.load_form(session, subject, form, FormRef(LOG_EVENT_OID, 1, "F.AE", 1))
        assert stored is not None
        multichoice = {i.name for g in form.item_groups for i in g.items if i.type == "multichoice"}
        first = {
            name: value.split(",") if name in multichoice and value else value
            for name, value in stored.rows["IG.AE"][1].items()
        } | {"AEDLTYN": "Y"}
        flagged = factories.save(
            session, zm001, subject, "F.AE", {"IG.AE": {1: first}}, event=LOG_EVENT_OID,
            reason="Meets the DLT criteria", by="investigator3",
        )  # fmt: skip
        assert flagged.saved, flagged.evaluation.errors
        assert onsets() == (first["AESTDAT"],)

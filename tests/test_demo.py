"""The demo data as a user sees it: a ZM001 study some months into dose escalation."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.audit import ITEM_ACTIONS
from app.demo import DEMO_ACCOUNTS, SCENARIOS, load_demo
from app.models import (
    AuditRecord,
    DataLock,
    ItemData,
    Query,
    Signature,
    Site,
    SourceVerification,
    Subject,
)
from app.study.loader import Study


def item_values(session: Session, item_oid: str) -> list[str | None]:
    return list(session.exec(select(ItemData.value).where(ItemData.item_oid == item_oid)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_builds_a_study_in_progress_entered_like_real_data(
    engine: Engine, zm001: Study
) -> None:
    assert load_demo(engine, zm001, subjects=len(SCENARIOS))
    assert not load_demo(engine, zm001, subjects=len(SCENARIOS))
    with Session(engine) as session:
        subjects = session.exec(select(Subject, Site).join(Site)).all()
        assert len(subjects) == len(SCENARIOS)
        assert {site.number for _, site in subjects} == {"01", "02", "03"}
        statuses = {subject.status for subject, _ in subjects}
        assert len(statuses) >= 6, statuses
        assert {"screen_failed", "enrolled", "in_follow_up", "completed"} <= statuses
        levels = {subject.dose_level for subject, _ in subjects}
        assert {level.code for level in zm001.info.dose_levels} <= levels

        crs_grades = {int(v) for v in item_values(session, "IT.CRS.CRSGRDER") if v}
        assert crs_grades and crs_grades <= {1, 2, 3}
        flags = set(item_values(session, "IT.LBHEM.LBNRIND"))
        flags |= set(item_values(session, "IT.LBCHEM.LBNRIND"))
        assert {"HIGH", "LOW"} & flags and "NORMAL" in flags

        item_changes = session.exec(
            select(AuditRecord).where(col(AuditRecord.action).in_(ITEM_ACTIONS))
        ).all()
        assert len(item_changes) > 1000
        accounts = {username for username, _, _ in DEMO_ACCOUNTS}
        assert all(r.username in accounts and r.user_id for r in item_changes)

        # A cleaning state: system and manual queries in each state someone acts on, and a
        # frozen casebook.
        queries = set(session.exec(select(col(Query.check_id).is_(None), Query.state)).all())
        assert {(True, "open"), (True, "answered"), (True, "closed")} <= queries
        assert {(False, "open"), (False, "answered"), (False, "closed")} <= queries
        assert session.exec(select(DataLock.level)).all() == ["freeze"]
        # Source data verification: forms verified, and one verification dropped by a change.
        verifications = session.exec(select(SourceVerification)).all()
        assert sum(v.ended_at is None for v in verifications) >= 10
        dropped = [v for v in verifications if v.changed_items]
        assert [(v.form_oid, v.changed_items) for v in dropped] == [("F.IC", "IT.IC.ICTIM")]

        # The investigator signed a casebook, and a form the site corrected afterwards.
        signatures = session.exec(select(Signature).order_by(col(Signature.id))).all()
        assert [(s.form_oid, s.broken_at is None) for s in signatures] == [
            ("F.DS", False),
            (None, True),
        ]
        assert signatures[0].broken_by_change == (
            "End of Study / Disposition (End of study / early termination): DS.DSLCDAT changed"
        )
        assert signatures[1].signer_name == "Dr Li Wei"

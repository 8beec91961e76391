"""Site-local time: what is "today" (future dates, visit windows, study days) is the date at
the site, in its IANA time zone; audit timestamps stay UTC. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from app import admin
from app.crf.changes import FormRefused
from app.db import unit_of_work
from app.models import AuditRecord, Role, Site, pk
from app.study.loader import Study
from tests import factories

SHANGHAI_MORNING = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
"""07:30 on 2 December in Asia/Shanghai, still 1 December in UTC."""


def test_at_half_past_seven_in_shanghai_a_coordinator_dates_a_visit_today(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        assert session.get(Site, 1).time_zone == "Asia/Shanghai"  # type: ignore[union-attr]
        subject = factories.register(session, zm001)
        today = date(2026, 12, 2)
        factories.date_visit(session, zm001, subject, "SE.SCR", today, now=SHANGHAI_MORNING)
        consent = {"ICVER": "2.0", "ICDAT": today.isoformat(), "ICLTFU": "Y"}
        outcome = factories.save(
            session, zm001, subject, "F.IC", {"IG.IC": {1: consent}}, now=SHANGHAI_MORNING
        )
        assert outcome.saved, outcome.evaluation.errors
        record = session.exec(
            select(AuditRecord).where(
                AuditRecord.subject_id == subject.id, AuditRecord.action == "visit_date"
            )
        ).one()
        assert record.new_value == "2026-12-02"
        assert record.occurred_at == SHANGHAI_MORNING  # the audit trail keeps UTC


def test_at_the_same_moment_a_site_in_utc_may_not_date_a_visit_tomorrow(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        with unit_of_work(session):
            site = admin.create_site(
                session, access=factories.author(session, "admin").access, number="09",
                name="Reading room (UTC)", time_zone="UTC",
            )  # fmt: skip
        with unit_of_work(session):
            admin.grant_role(
                session, access=factories.author(session, "admin").access,
                user_id=pk(factories.user(session)), role=Role.COORDINATOR, site_id=site.id,
            )  # fmt: skip
        subject = factories.register(session, zm001, site_id=pk(site))
        with pytest.raises(FormRefused, match=r"after today \(2026-12-01 at the site\)"):
            factories.date_visit(
                session, zm001, subject, "SE.SCR", date(2026, 12, 2), now=SHANGHAI_MORNING
            )


def test_a_site_needs_an_iana_time_zone(demo_engine: Engine) -> None:
    with Session(demo_engine) as session:
        access = factories.author(session, "admin").access
        with pytest.raises(admin.AdminRefused, match="'China' is not an IANA time zone"):
            admin.create_site(session, access=access, number="08", name="X", time_zone="China")

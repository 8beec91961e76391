"""Persistence on SQLite and PostgreSQL: migrations match the models, the audit trail is
append-only, screening numbers are unique, and the optimistic lock holds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, select

from app import audit
from app.access import load_access
from app.crf import service
from app.db import pending_migrations
from app.models import AuditRecord, Subject, UserAccount, utcnow
from app.study.loader import Study


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    assert pending_migrations(engine) is None
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def coordinator(session: Session, name: str = "coordinator") -> UserAccount:
    return session.exec(select(UserAccount).where(UserAccount.username == name)).one()


def test_audit_records_cannot_be_changed_or_deleted(demo_engine: Engine) -> None:
    with Session(demo_engine) as session:
        record = session.exec(select(AuditRecord)).first()
        assert record is not None
        for statement in (
            text("UPDATE audit_record SET username = 'someone else'"),
            text("DELETE FROM audit_record"),
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                session.execute(statement)
            session.rollback()
        assert session.get(AuditRecord, record.id).username == record.username  # type: ignore[union-attr]


def test_concurrent_registrations_get_distinct_screening_numbers(demo_engine: Engine) -> None:
    with Session(demo_engine) as session:
        user = coordinator(session)

    def register(_: int) -> str:
        with Session(demo_engine) as session:
            access = load_access(session, user)
            return service.register_subject(
                session, access=access, site_id=1, actor=audit.Actor(user)
            ).subject_key

    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(register, range(12)))
    assert sorted(keys) == [f"01-{n:03d}" for n in range(1, 13)]


def test_second_save_on_the_same_version_is_a_conflict(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        user = coordinator(session)
        access = load_access(session, user)
        subject = service.register_subject(
            session, access=access, site_id=1, actor=audit.Actor(user)
        )

    def save(sex: str) -> service.SaveOutcome:
        with Session(demo_engine, expire_on_commit=False) as session:
            return service.save_form(
                session,
                zm001,
                access=access,
                subject=subject,
                event_oid="SE.SCR",
                event_repeat=1,
                form_oid="F.DM",
                form_repeat=1,
                submitted={"IG.DM": {1: {"SEX": sex}}},
                base_version=0,
                complete=False,
                reason=None,
                actor=audit.Actor(user),
                now=utcnow(),
            )

    assert save("F").saved
    with pytest.raises(service.SaveConflict) as conflict:
        save("M")
    assert conflict.value.changes == [("Sex", "F", "M")]
    with Session(demo_engine) as session:
        values = [
            r.new_value
            for r in session.exec(select(AuditRecord).where(AuditRecord.item_oid == "IT.DM.SEX"))
        ]
        assert values == ["F"]


def test_changing_a_complete_form_needs_a_reason(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        user = coordinator(session)
        access = load_access(session, user)
        subject = service.register_subject(
            session, access=access, site_id=1, actor=audit.Actor(user)
        )
        common = {
            "access": access,
            "subject": subject,
            "event_oid": "SE.SCR",
            "event_repeat": 1,
            "form_oid": "F.IC",
            "form_repeat": 1,
            "actor": audit.Actor(user),
            "now": utcnow(),
        }
        values = {"ICVER": "2.0", "ICDAT": "2026-01-05", "ICLTFU": "Y"}
        first = service.save_form(
            session,
            zm001,
            submitted={"IG.IC": {1: values}},
            base_version=0,
            complete=True,
            reason=None,
            **common,
        )
        assert first.saved and first.status == "complete"
        changed = {**values, "ICDAT": "2026-01-06"}
        refused = service.save_form(
            session,
            zm001,
            submitted={"IG.IC": {1: changed}},
            base_version=1,
            complete=True,
            reason=None,
            **common,
        )
        assert not refused.saved
        assert refused.form_errors == ["This form was complete: give a reason for the change."]
        accepted = service.save_form(
            session,
            zm001,
            submitted={"IG.IC": {1: changed}},
            base_version=1,
            complete=True,
            reason="transcription error",
            **common,
        )
        assert accepted.saved and accepted.version == 2
        record = session.exec(
            select(AuditRecord).where(
                AuditRecord.item_oid == "IT.IC.ICDAT", AuditRecord.action == "Update"
            )
        ).one()
        assert (record.old_value, record.new_value, record.reason) == (
            "2026-01-05",
            "2026-01-06",
            "transcription error",
        )
        assert session.exec(select(Subject)).first() is not None

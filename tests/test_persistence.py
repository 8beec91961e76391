"""Persistence on SQLite and PostgreSQL: migrations match the models, the audit trail is
append-only, screening numbers are unique, and the optimistic lock holds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel, col, select

from app.crf import reads, write
from app.crf.changes import FormEdit, FormRef, FormRefused, FormValues, SaveConflict
from app.crf.form_changes import REASON_NEEDED, REASON_NOT_APPLICABLE
from app.db import pending_migrations
from app.models import AuditRecord, pk, utcnow
from app.study.loader import Study
from tests import factories


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    assert pending_migrations(engine) is None
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


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


def test_concurrent_registrations_get_distinct_screening_numbers(
    demo_engine: Engine, zm001: Study
) -> None:
    def register(_: int) -> str:
        with Session(demo_engine) as session:
            return factories.register(session, zm001).subject_key

    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(register, range(12)))
    assert sorted(keys) == [f"01-{n:03d}" for n in range(1, 13)]


def test_second_save_on_the_same_version_is_a_conflict(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)

    def save(sex: str) -> write.Outcome:
        with Session(demo_engine, expire_on_commit=False) as session:
            return factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: {"SEX": sex}}},
                                  version=0)  # fmt: skip

    assert save("F").saved
    with pytest.raises(SaveConflict) as conflict:
        save("M")
    assert conflict.value.changes == [("Sex", "F", "M")]
    with Session(demo_engine) as session:
        records = session.exec(select(AuditRecord).where(AuditRecord.item_oid == "IT.DM.SEX"))
        assert [r.new_value for r in records] == ["F"]


def test_changing_a_complete_form_needs_a_reason_per_value(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        ref = FormRef("SE.SCR", 1, "F.IC", 1)

        def save(edit: FormEdit) -> write.Outcome:
            return factories.apply(session, zm001, FormValues(pk(subject), ref, edit))

        values = {"ICVER": "2.0", "ICDAT": "2026-01-05", "ICLTFU": "Y"}
        first = save(FormEdit({"IG.IC": {1: values}}, base_version=0, complete=True))
        assert first.saved and first.form.status == "complete"
        changed = {**values, "ICDAT": "2026-01-06", "ICVER": "2.1"}
        refused = save(FormEdit({"IG.IC": {1: changed}}, base_version=1, complete=True))
        assert not refused.saved
        assert refused.evaluation.errors == {
            ("IG.IC", 1, "ICDAT"): REASON_NEEDED,
            ("IG.IC", 1, "ICVER"): REASON_NEEDED,
        }
        accepted = save(
            FormEdit(
                {"IG.IC": {1: changed}}, base_version=1, complete=True,
                reason="site re-consented on a new version",
                reasons={("IG.IC", 1, "ICDAT"): "transcription error"},
            )
        )  # fmt: skip
        assert accepted.saved and accepted.version == 2
        updates = session.exec(
            select(AuditRecord)
            .where(AuditRecord.action == "Update")
            .order_by(col(AuditRecord.item_oid))
        ).all()
        assert [(r.item_oid, r.old_value, r.new_value, r.reason) for r in updates] == [
            ("IT.IC.ICDAT", "2026-01-05", "2026-01-06", "transcription error"),
            ("IT.IC.ICVER", "2.0", "2.1", "site re-consented on a new version"),
        ]


def test_a_form_not_done_needs_a_reason_and_no_values(demo_engine: Engine, zm001: Study) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        with pytest.raises(FormRefused, match="reason"):
            factories.not_done(session, zm001, subject, "F.ECHO", " ")
        factories.not_done(session, zm001, subject, "F.ECHO", "echo machine unavailable")
        ref = FormRef("SE.SCR", 1, "F.ECHO", 1)
        stored = reads.load_form(session, subject, zm001.form("F.ECHO"), ref)
        assert stored is not None
        assert (stored.form_data.status, stored.form_data.not_done_reason) == (
            "not_done",
            "echo machine unavailable",
        )
        record = session.exec(select(AuditRecord).where(AuditRecord.action == "form_status")).one()
        assert (record.new_value, record.reason) == ("not_done", "echo machine unavailable")


def test_an_idle_session_expires(demo_engine: Engine) -> None:
    from datetime import timedelta

    from app import auth
    from app.demo import DEMO_PASSWORD

    with Session(demo_engine) as session:
        now = utcnow()
        token = auth.login(
            session, username="coordinator", password=DEMO_PASSWORD, source="test", now=now
        )
        idle = timedelta(minutes=30)
        assert auth.session_user(session, token=token, idle=idle, now=now + timedelta(minutes=29))
        assert (
            auth.session_user(session, token=token, idle=idle, now=now + timedelta(minutes=60))
            is None
        )
        assert (
            auth.session_user(session, token=token, idle=idle, now=now + timedelta(minutes=61))
            is None
        )


def test_an_answer_hidden_by_a_changed_condition_is_cleared_and_audited(
    demo_engine: Engine, zm001: Study
) -> None:
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)

        def save(values: dict[str, str]) -> write.Outcome:
            return factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: values}})

        assert save({"SEX": "F", "CHILDPOT": "N", "NCBPRSN": "HYSTERECTOMY"}).saved
        assert save({"SEX": "M", "CHILDPOT": "N", "NCBPRSN": "HYSTERECTOMY"}).saved
        removed = session.exec(
            select(AuditRecord)
            .where(AuditRecord.action == "Remove")
            .order_by(col(AuditRecord.item_oid))
        ).all()
        assert [(r.item_oid, r.old_value, r.reason) for r in removed] == [
            ("IT.DM.CHILDPOT", "N", REASON_NOT_APPLICABLE),
            ("IT.DM.NCBPRSN", "HYSTERECTOMY", REASON_NOT_APPLICABLE),
        ]

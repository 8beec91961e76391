"""Derived values and conditions stay true across forms: correcting an input re-derives its
dependants in the subject's other forms in the same change, each audited with its cause, and
what SDTM exports follows. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app.crf import reads
from app.crf.changes import FormRef
from app.models import AuditRecord, Subject
from app.sdtm.build import write_sdtm
from app.sdtm.rules import read_written
from app.sdtm.spec import load_sdtm_specs
from app.study.loader import Study
from tests import factories
from tests.conftest import REPO

CONSENT = {"ICVER": "2.0", "ICDAT": "2026-01-05", "ICLTFU": "Y"}
DEMOGRAPHICS = {"BRTHDAT": "1990-06-01", "SEX": "F", "ETHNIC": "HAN", "RACE": "ASIAN",
                "CHILDPOT": "Y"}  # fmt: skip


def stored(session: Session, study: Study, subject: Subject, ref: FormRef) -> dict[str, str | None]:
    """The stored values of the form's first group (row 1)."""
    form = study.form(ref.form_oid)
    found = reads.load_form(session, subject, form, ref)
    assert found is not None
    return found.rows.get(form.item_groups[0].oid, {}).get(1, {})


def item_trail(session: Session, subject: Subject, item_oid: str) -> list[AuditRecord]:
    return list(
        session.exec(
            select(AuditRecord)
            .where(AuditRecord.subject_id == subject.id, AuditRecord.item_oid == item_oid)
            .order_by(col(AuditRecord.id))
        )
    )


def test_correcting_the_consent_date_updates_the_age_and_the_sdtm_age(
    demo_engine: Engine, zm001: Study, tmp_path: Path
) -> None:
    dm = FormRef("SE.SCR", 1, "F.DM", 1)
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        factories.save(session, zm001, subject, "F.IC", {"IG.IC": {1: CONSENT}}, complete=True)
        saved = factories.save(
            session, zm001, subject, "F.DM", {"IG.DM": {1: DEMOGRAPHICS}}, complete=True
        )
        assert saved.saved and stored(session, zm001, subject, dm)["AGE"] == "35"

        corrected = {**CONSENT, "ICDAT": "2026-07-01"}
        outcome = factories.save(
            session, zm001, subject, "F.IC", {"IG.IC": {1: corrected}},
            reason="date misread from the signed form",
        )  # fmt: skip
        assert outcome.saved
        assert [plan.ref.form_oid for plan in outcome.plan.forms] == ["F.IC", "F.DM"]
        assert stored(session, zm001, subject, dm)["AGE"] == "36"
        age = item_trail(session, subject, "IT.DM.AGE")
        assert [(r.old_value, r.new_value, r.reason) for r in age] == [
            (None, "35", None),
            ("35", "36", "recalculated from changed answers: IC.ICDAT"),
        ]
        assert age[-1].username == "coordinator"
        assert factories.stored_version(session, subject, zm001, dm) == 2

        specs = load_sdtm_specs(REPO / "exports", zm001)
        datasets = {
            d.name: d
            for d in write_sdtm(session, zm001, specs, tmp_path, formats=frozenset({"json"}))
        }
    columns, rows = read_written(datasets["DM"])
    dm_rows = [dict(zip(columns, row, strict=True)) for row in rows]
    record = next(r for r in dm_rows if r["SUBJID"] == subject.subject_key)
    assert record["AGE"] == 36


def test_correcting_the_infusion_start_moves_the_end_of_the_dlt_window(
    demo_engine: Engine, zm001: Study
) -> None:
    dlt = FormRef("SE.D28", 1, "F.DLT", 1)
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        infusion = {"IG.EX": {1: {"EXSTDTM": "2026-03-02T10:00"}}}
        factories.save(session, zm001, subject, "F.EX", infusion, event="SE.D0")
        factories.save(session, zm001, subject, "F.DLT", {"IG.DLT": {1: {}}}, event="SE.D28")
        assert stored(session, zm001, subject, dlt)["DLTWEND"] == "2026-03-30"

        moved = {"IG.EX": {1: {"EXSTDTM": "2026-03-05T09:30"}}}
        assert factories.save(session, zm001, subject, "F.EX", moved, event="SE.D0").saved
        assert stored(session, zm001, subject, dlt)["DLTWEND"] == "2026-04-02"
        (change,) = item_trail(session, subject, "IT.DLT.DLTWEND")[1:]
        assert change.reason == "recalculated from changed answers: EX.EXSTDTM"


def test_a_correction_clears_answers_of_other_forms_that_no_longer_apply(
    demo_engine: Engine, zm001: Study
) -> None:
    preg = FormRef("SE.SCR", 1, "F.PREG", 1)
    test = {"PGDAT": "2026-01-06", "PGSPEC": "SERUM", "PGRES": "NEGATIVE"}
    with Session(demo_engine, expire_on_commit=False) as session:
        subject = factories.register(session, zm001)
        factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: DEMOGRAPHICS}})
        assert factories.save(session, zm001, subject, "F.PREG", {"IG.PREG": {1: test}}).saved

        male = {**DEMOGRAPHICS, "SEX": "M"}
        assert factories.save(session, zm001, subject, "F.DM", {"IG.DM": {1: male}}).saved
        assert stored(session, zm001, subject, preg) == {}
        removed = item_trail(session, subject, "IT.PREG.PGRES")[-1]
        assert (removed.action, removed.old_value, removed.new_value) == (
            "Remove", "NEGATIVE", None,
        )  # fmt: skip
        assert removed.reason == (
            "cleared: the question no longer applies (DM.CHILDPOT, DM.SEX changed)"
        )

"""The batch run: every check over data stored before the checks existed, one subject at a
time, with the same code as on save; `--dry-run` changes nothing; `--json` as the issue says
(both databases)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from app import audit
from app.checks.batch import run_batch
from app.cli import cli
from app.config import get_settings
from app.models import ItemData, Query
from app.study.loader import Study
from tests import factories
from tests.checks.test_check_engine import crs
from tests.conftest import EXPORTS, FORMS

LATE_END = {"AETERM": "Rash", "AESTDAT": "2026-02-10", "AEONGO": "N", "AEENDAT": "2026-02-01"}


def store_before_the_checks(engine: Engine, zm001: Study) -> str:
    """A subject whose AE ends before it starts and whose CRS grade differs from the
    derived one, stored while the study had no checks; returns its key."""
    unchecked = replace(zm001, checks=(), check_files=())
    with Session(engine, expire_on_commit=False) as session:
        subject = factories.register(session, unchecked)
        ae = {"IG.AE": {1: LATE_END}}
        assert factories.save(session, unchecked, subject, "F.AE", ae, event="SE.LOG").saved
        assert factories.save(session, unchecked, subject, "F.CRS", crs("3"), event="SE.LOG").saved
        return subject.subject_key


def test_a_batch_run_opens_queries_for_stored_data_and_never_rewrites_them(
    demo_engine: Engine, zm001: Study
) -> None:
    key = store_before_the_checks(demo_engine, zm001)
    actor = audit.Actor(None, "cli")
    dry = run_batch(demo_engine, zm001, dry_run=True, actor=actor)
    assert sorted((f["check"], f["severity"], f["item"], f["repeat"]) for f in dry.findings) == [
        ("EC045", "hard", "IT.AE.AEENDAT", 1),
        ("EC051", "soft", "IT.CRS.CRSGRINV", 1),
    ]
    assert dry.transitions == {"open": 2}
    with Session(demo_engine) as session:
        assert session.exec(select(Query)).all() == []

    report = run_batch(demo_engine, zm001, subject_key=key, actor=actor)
    assert (report.subjects, report.transitions) == (1, {"open": 2})
    with Session(demo_engine) as session:
        queries = session.exec(select(Query.check_id, Query.state).order_by(Query.check_id)).all()
        assert queries == [("EC045", "open"), ("EC051", "open")]
        ends = session.exec(select(ItemData.value).where(ItemData.item_oid == "IT.AE.AEENDAT"))
        assert ends.all() == ["2026-02-01"]  # the data stay as entered
    again = run_batch(demo_engine, zm001, actor=actor)
    assert again.transitions == {} and len(again.findings) == 2  # no second query

    with pytest.raises(LookupError, match="no site 99"):
        run_batch(demo_engine, zm001, site_number="99", actor=actor)


def test_the_command_line_runs_the_checks_and_prints_json(
    demo_engine: Engine, database_url: str, zm001: Study, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = store_before_the_checks(demo_engine, zm001)
    monkeypatch.setenv("TRIALDESK_DATABASE_URL", database_url)
    monkeypatch.setenv("TRIALDESK_STUDIES", f'[{{"forms": "{FORMS}", "exports": "{EXPORTS}"}}]')
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        dry = runner.invoke(cli, ["checks", "run", "--dry-run", "--json", "--site", "01"])
        assert dry.exit_code == 0, dry.output
        printed = json.loads(dry.stdout)
        assert (printed["subjects"], printed["dry_run"], printed["queries"]) == (
            1,
            True,
            {"open": 2},
        )
        (finding,) = [f for f in printed["findings"] if f["check"] == "EC045"]
        assert finding == {
            "check": "EC045", "subject": key, "severity": "hard", "event": "SE.LOG",
            "event_repeat": 1, "form": "F.AE", "form_repeat": 1, "item": "IT.AE.AEENDAT",
            "repeat": 1, "message": finding["message"],
        }  # fmt: skip
        done = runner.invoke(cli, ["checks", "run", "--subject", key])
        assert done.exit_code == 0, done.output
        assert "2 findings; query transitions made: 2 open" in done.stdout
        unknown = runner.invoke(cli, ["checks", "run", "--subject", "77-777"])
        assert unknown.exit_code == 1 and "no subject 77-777 in ZM001" in unknown.output
    finally:
        get_settings.cache_clear()

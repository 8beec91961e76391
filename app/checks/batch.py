"""The batch run of every edit check over a study, one site or one subject: the command line
(`trialdesk checks run`) and the data manager's page call it.

One subject at a time, each in its own transaction (memory does not grow with the study, and
other users are not held up), with the checks' code of the save; `run_subject_checks` writes
only queries, through the write path's persist and audit steps.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from app import audit
from app.checks.evaluate import CheckResult, compiled_checks, run_checks
from app.checks.subject_data import load_subject_data
from app.crf import persist, reads
from app.db import unit_of_work
from app.models import Site, Subject, pk, utcnow
from app.review.system_queries import QueryPlan, plan_system_queries, query_audit_entries
from app.study.loader import Study, find_item


@dataclass
class BatchReport:
    """What a batch run found and did."""

    checks: int
    subjects: int = 0
    seconds: float = 0.0
    findings: list[dict[str, Any]] = field(default_factory=list)
    transitions: Counter[str] = field(default_factory=Counter)
    """Query transitions made (or, in a dry run, that would be made) by kind: open, reopen,
    resolve, close."""
    dry_run: bool = False

    def summary(self) -> dict[str, Any]:
        """What the checks page shows of a run: `as_json` with the findings counted per
        check instead of listed (the list is in the queries the run opened)."""
        by_check = Counter(finding["check"] for finding in self.findings)
        return {
            **{key: value for key, value in self.as_json().items() if key != "findings"},
            "findings": len(self.findings), "by_check": dict(sorted(by_check.items())),
        }  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "checks": self.checks, "subjects": self.subjects, "seconds": round(self.seconds, 2),
            "dry_run": self.dry_run, "queries": dict(sorted(self.transitions.items())),
            "findings": self.findings,
        }  # fmt: skip


def run_batch(
    engine: Engine,
    study: Study,
    *,
    site_number: str | None = None,
    subject_key: str | None = None,
    dry_run: bool = False,
    actor: audit.Actor,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> BatchReport:
    """Run every check on the subjects in scope; raises LookupError for an unknown site or
    subject."""
    started = time.perf_counter()
    report = BatchReport(checks=len(compiled_checks(study)), dry_run=dry_run)
    with Session(engine) as session:
        ids = subject_ids(session, study, site_number, subject_key)
    for done, subject_id in enumerate(ids, start=1):
        with Session(engine, expire_on_commit=False) as session, unit_of_work(session):
            subject = session.get(Subject, subject_id)
            assert subject is not None
            results, queries = run_subject_checks(
                session, study, subject, actor=actor, now=utcnow(), dry_run=dry_run
            )
        report.subjects += 1
        report.findings += [_finding(study, subject, r) for r in results if not r.passed]
        for plan in queries:
            report.transitions.update(t.action.removeprefix("query_") for t in plan.transitions)
        progress(done, len(ids))
    report.seconds = time.perf_counter() - started
    return report


def subject_ids(
    session: Session, study: Study, site_number: str | None, subject_key: str | None
) -> list[int]:
    statement = select(Subject.id).where(Subject.study_id == study.id)
    if site_number is not None:
        site = session.exec(
            select(Site).where(Site.study_id == study.id, Site.number == site_number)
        ).first()
        if site is None:
            raise LookupError(f"no site {site_number} in {study.info.oid}")
        statement = statement.where(Subject.site_id == site.id)
    if subject_key is not None:
        statement = statement.where(Subject.subject_key == subject_key)
    ids = [i for i in session.exec(statement.order_by(col(Subject.subject_key))) if i is not None]
    if subject_key is not None and not ids:
        raise LookupError(f"no subject {subject_key} in {study.info.oid}")
    return ids


def _finding(study: Study, subject: Subject, result: CheckResult) -> dict[str, Any]:
    form = study.forms[result.ref.form_oid]
    found = find_item(form, result.item_name)
    per_row = found is not None and found[0].repeating
    return {
        "check": result.check.id, "subject": subject.subject_key,
        "severity": str(result.check.severity), "event": result.ref.event_oid,
        "event_repeat": result.ref.event_repeat, "form": result.ref.form_oid,
        "form_repeat": result.ref.form_repeat, "item": result.item_oid,
        "repeat": result.group_repeat if per_row else result.ref.form_repeat,
        "message": result.check.message,
    }  # fmt: skip


def run_subject_checks(
    session: Session,
    study: Study,
    subject: Subject,
    *,
    actor: audit.Actor,
    now: datetime,
    dry_run: bool = False,
) -> tuple[list[CheckResult], list[QueryPlan]]:
    """Run every edit check on the subject's stored casebook and make the system queries
    agree with the results (the batch run's way through the write path: nothing is evaluated
    but the checks, and only queries change). A hard check's finding opens a query here: the
    data were stored before the check existed, and a check never rewrites data. The caller
    authorises (the data manager's page, or the command line's operator) and commits; with
    `dry_run` nothing is written. Returns the results and what they do to queries."""
    data = load_subject_data(session, study, subject)
    results = run_checks(
        study, data, compiled_checks(study), reads.site_today(session, subject, now)
    )
    queries = plan_system_queries(session, study.id, pk(subject), results)
    if not dry_run:
        persist.write_queries(session, queries, now=now)
        audit.record_all(session, query_audit_entries(subject, queries, actor, now))
    return results, queries

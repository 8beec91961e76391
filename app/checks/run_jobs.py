"""Check-run jobs: the data manager starts a batch run of the edit checks (`app.checks.batch`)
on the checks page and watches its progress from any server process.

As for import jobs (`app.import_jobs`, with the machinery in `app.jobs`), the job lives in
the database: state, progress (subjects checked of the total), heartbeat and, once done, the
run's summary as JSON. The process that accepts the request runs it in a thread, one subject
per transaction. A run that breaks off leaves the queries of the subjects it checked as they
are (each subject's run is whole), and can simply be started again.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from app import audit, jobs
from app.access import Access, AccessDenied, Permission
from app.audit import AuditAction
from app.checks.batch import run_batch, subject_ids
from app.crf.changes import NotFound
from app.models import CheckRunJob, JobState, UserAccount, pk, utcnow
from app.study.loader import Study

logger = logging.getLogger(__name__)

INTERRUPTED = (
    "Interrupted: the server process running it stopped. The subjects it checked keep their "
    "queries; start the run again."
)


@dataclass(frozen=True)
class CheckRunView(jobs.JobView[CheckRunJob]):
    """A check run as pages show it, with its scope and, once done, its summary."""

    interrupted_message = INTERRUPTED

    @property
    def scope(self) -> str:
        if self.job.subject_key:
            return f"subject {self.job.subject_key}"
        return f"site {self.job.site_number}" if self.job.site_number else "the whole study"

    @property
    def summary(self) -> dict[str, Any] | None:
        """`BatchReport.summary` once the run is done."""
        if self.job.state != JobState.DONE or self.job.report is None:
            return None
        summary: dict[str, Any] = json.loads(self.job.report)
        return summary


def create_job(
    session: Session,
    study: Study,
    access: Access,
    *,
    site_number: str | None,
    subject_key: str | None,
    dry_run: bool,
) -> CheckRunJob:
    """Record a queued run (refused with LookupError naming an unknown site or subject), after
    writing as failed the interrupted ones. The caller commits, then launches it."""
    if access.site_ids(Permission.RUN_CHECKS) is not None:
        raise AccessDenied("only a study-wide data manager runs the checks")
    subject_ids(session, study, site_number, subject_key)  # the scope exists
    jobs.fail_interrupted(session, CheckRunJob, INTERRUPTED)
    job = CheckRunJob(
        study_id=study.id, site_number=site_number, subject_key=subject_key, dry_run=dry_run,
        requested_by_id=pk(access.user),
    )  # fmt: skip
    session.add(job)
    session.flush()
    return job


def launch(engine: Engine, study: Study, job_id: int) -> threading.Thread:
    """Run a job in a background thread of this process."""
    thread = threading.Thread(
        target=run_job, args=(engine, study, job_id), name=f"check-run-{job_id}", daemon=True
    )
    thread.start()
    return thread


def run_job(engine: Engine, study: Study, job_id: int) -> None:
    """Claim a queued job and run it to done or failed; returns quietly if another process
    claimed it. Queries change as the user who asked, through the source `checks`."""
    if not jobs.claim(engine, CheckRunJob, job_id):
        return
    heartbeat = jobs.Heartbeat(engine, CheckRunJob, job_id)
    heartbeat.start()
    try:
        with Session(engine, expire_on_commit=False) as session:
            job = session.get(CheckRunJob, job_id)
            user = session.get(UserAccount, job.requested_by_id) if job else None
            assert job is not None and user is not None
        report = run_batch(
            engine, study, site_number=job.site_number, subject_key=job.subject_key,
            dry_run=job.dry_run, actor=audit.Actor(user, "checks"), progress=heartbeat.progress,
        )  # fmt: skip
        summary = report.summary()
        outcome = f"{summary['findings']} findings on {summary['subjects']} subjects" + (
            " (dry run)" if job.dry_run else ""
        )
        _finish(engine, job_id, JobState.DONE, outcome, json.dumps(summary))
    except Exception as error:  # any failure must end the job, with its reason
        logger.exception("check run %s failed", job_id)
        _finish(engine, job_id, JobState.FAILED, f"{type(error).__name__}: {error}"[:2000])
    finally:
        heartbeat.stop()


def _finish(
    engine: Engine, job_id: int, state: JobState, message: str, report: str | None = None
) -> None:
    """Write the outcome, audited; nothing if the job is no longer this process's running
    job (it was failed as interrupted meanwhile)."""
    with Session(engine) as session:
        done = session.execute(
            update(CheckRunJob)
            .where(
                col(CheckRunJob.id) == job_id,
                col(CheckRunJob.state) == JobState.RUNNING,
                col(CheckRunJob.worker) == jobs.this_worker(),
            )
            .values(state=state, finished_at=utcnow(), message=message, report=report)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return
        job = session.get(CheckRunJob, job_id)
        assert job is not None
        audit.record(
            session, actor=audit.Actor(session.get(UserAccount, job.requested_by_id), "checks"),
            action=AuditAction.CHECK_RUN, study_id=job.study_id,
            details=f"job {job_id}: {state}; {message}"[:500],
        )  # fmt: skip
        session.commit()


def fail_interrupted(session: Session) -> int:
    """Write as failed the check runs whose process stopped. Commits."""
    return jobs.fail_interrupted(session, CheckRunJob, INTERRUPTED)


def fail_own_running(session: Session) -> int:
    """When this process shuts down: mark its running check runs failed. Commits."""
    return jobs.fail_own_running(session, CheckRunJob, INTERRUPTED)


def list_jobs(session: Session, access: Access, limit: int = 20) -> list[CheckRunView]:
    """The study's latest check runs, newest first. Only reads."""
    access.require(Permission.RUN_CHECKS)
    now = utcnow()
    rows = session.exec(
        select(CheckRunJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == CheckRunJob.requested_by_id)
        .where(CheckRunJob.study_id == access.study_id)
        .order_by(col(CheckRunJob.id).desc())
        .limit(limit)
    )
    return [CheckRunView(job, user.full_name, jobs.is_interrupted(job, now)) for job, user in rows]


def get_job(session: Session, access: Access, job_id: int) -> CheckRunView:
    """One run of the user's study (else NotFound). Only reads."""
    access.require(Permission.RUN_CHECKS)
    row = session.exec(
        select(CheckRunJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == CheckRunJob.requested_by_id)
        .where(col(CheckRunJob.id) == job_id, CheckRunJob.study_id == access.study_id)
    ).first()
    if row is None:
        raise NotFound(f"check run {job_id}")
    return CheckRunView(row[0], row[1].full_name, jobs.is_interrupted(row[0], utcnow()))

"""What export, import and check-run jobs share: claiming a queued job, the heartbeat that shows its
process is alive, and finding the jobs whose process stopped.

A job is a row of a job table (`ExportJob`, `ImportJob`) with `state`, `worker`,
`requested_at`, `started_at`, `heartbeat_at`, `finished_at`, `message` and the progress
columns. Only the process whose `worker` a running job names writes its progress and result;
any process may find it interrupted from its heartbeat (`is_interrupted`, without writing) and
write that (`fail_interrupted`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Generic, TypeVar

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col

from app.models import CheckRunJob, ExportJob, ImportJob, JobState, utcnow

logger = logging.getLogger(__name__)

JobTable = type[ExportJob] | type[ImportJob] | type[CheckRunJob]
HEARTBEAT_SECONDS = 2.0
STALE_AFTER = timedelta(seconds=60)
"""A running job whose heartbeat is older than this has lost its process."""
INTERRUPTED = "Interrupted: the server process running it stopped. Start it again."
STOPPED = "Interrupted: the server was stopped while it ran. Start it again."


Job = TypeVar("Job", ImportJob, CheckRunJob)


@dataclass(frozen=True)
class JobView(Generic[Job]):
    """A job as pages show it: use `state` and `message`, not the job's own, which an
    interrupted job has not had written yet (`interrupted_message` says what it left)."""

    interrupted_message: ClassVar[str] = INTERRUPTED
    job: Job
    requested_by: str
    interrupted: bool

    @property
    def state(self) -> str:
        return JobState.FAILED if self.interrupted else self.job.state

    @property
    def busy(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.RUNNING)

    @property
    def message(self) -> str | None:
        return self.interrupted_message if self.interrupted else self.job.message

    @property
    def percent(self) -> int:
        total = self.job.progress_total
        return min(100, int(100 * self.job.progress_done / total)) if total else 0


def this_worker() -> str:
    """The name this process writes into the jobs it runs: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(engine: Engine, table: JobTable, job_id: int) -> bool:
    """Mark a queued job running in this process; False if another process claimed it."""
    with Session(engine) as session:
        now = utcnow()
        claimed = session.execute(
            update(table)
            .where(col(table.id) == job_id, col(table.state) == JobState.QUEUED)
            .values(state=JobState.RUNNING, started_at=now, heartbeat_at=now, worker=this_worker())
        )
        session.commit()
        return bool(claimed.rowcount)  # type: ignore[attr-defined]


class Heartbeat(threading.Thread):
    """Writes a running job's progress and a heartbeat every few seconds while it runs
    (`beat` writes them at once)."""

    def __init__(self, engine: Engine, table: JobTable, job_id: int) -> None:
        super().__init__(name=f"{table.__tablename__}-{job_id}-heartbeat", daemon=True)
        self.engine, self.table, self.job_id = engine, table, job_id
        self.done = self.total = 0
        self.stopped = threading.Event()

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.beat()
            except Exception:  # a missed beat is tried again; the thread must live on
                logger.warning(
                    "%s %s: heartbeat not written", self.name, self.job_id, exc_info=True
                )

    def beat(self) -> None:
        """Write the progress and heartbeat now, in a short transaction of its own."""
        table = self.table
        with Session(self.engine) as session:
            session.execute(
                update(table)
                .where(col(table.id) == self.job_id, col(table.state) == JobState.RUNNING)
                .values(progress_done=self.done, progress_total=self.total, heartbeat_at=utcnow())
            )
            session.commit()

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def is_interrupted(job: ExportJob | ImportJob | CheckRunJob, now: datetime) -> bool:
    """Whether the job's process stopped: running without a recent heartbeat, or queued for
    longer than that without being claimed."""
    stale = now - STALE_AFTER
    if job.state == JobState.RUNNING:
        return job.heartbeat_at is None or job.heartbeat_at < stale
    return job.state == JobState.QUEUED and job.requested_at < stale


def fail_interrupted(
    session: Session, table: JobTable, message: str = INTERRUPTED, now: datetime | None = None
) -> int:
    """Write as failed the jobs `is_interrupted` finds (in one statement, so that processes
    doing it at once agree). Commits; returns how many."""
    now = now or utcnow()
    stale = now - STALE_AFTER
    result = session.execute(
        update(table)
        .where(
            or_(
                (col(table.state) == JobState.RUNNING) & (col(table.heartbeat_at) < stale),
                (col(table.state) == JobState.QUEUED) & (col(table.requested_at) < stale),
            )
        )
        .values(state=JobState.FAILED, finished_at=now, message=message)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def fail_own_running(session: Session, table: JobTable, message: str = STOPPED) -> int:
    """When this process shuts down: mark its running jobs failed at once. Commits."""
    result = session.execute(
        update(table)
        .where(col(table.state) == JobState.RUNNING, col(table.worker) == this_worker())
        .values(state=JobState.FAILED, finished_at=utcnow(), message=message)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]

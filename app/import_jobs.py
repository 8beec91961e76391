"""Import jobs: an ODM file uploaded on the import page (or given to the command line) is
imported in the background, watched from any server process.

Everything about a job lives in the database, as for export jobs (`app.export_jobs`, with
the machinery both share in `app.jobs`): the uploaded file in `import_chunk` rows, the state,
progress (subjects checked, then stored, of the total), heartbeat and, once done, the import
report as JSON. The process that accepts the upload runs the job in a thread; the command
line runs it in its own process, the same code. The import itself works in short
transactions (`app.importers.odm_import`), so it never holds the database for other users.

A job is done when the import ran to its report, stored or refused (the report says which);
failed when it broke off (an error, or its process stopped: `jobs.is_interrupted`). Subjects
an interrupted job stored stay stored, audited with the source `import:<file name>`.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, insert, update
from sqlmodel import Session, col, select

from app import audit, jobs
from app.access import Access, Permission, load_access
from app.audit import AuditAction
from app.crf.changes import NotFound
from app.importers.odm_import import ImportReport, Progress, import_odm
from app.models import ImportChunk, ImportJob, JobState, UserAccount, pk, utcnow
from app.study.loader import Study

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DEFAULT_NAME = "upload.xml"
INTERRUPTED = (
    "Interrupted: the server process running it stopped. Subjects it stored stay stored (the "
    "audit trail names the file as their source); import the others again."
)


@dataclass(frozen=True)
class ImportJobView(jobs.JobView[ImportJob]):
    """An import job as pages show it, with its report once done."""

    interrupted_message = INTERRUPTED

    @property
    def report(self) -> ImportReport | None:
        """The import's report once the job is done."""
        if self.job.state != JobState.DONE or self.job.report is None:
            return None
        return ImportReport.from_json(self.job.report)


def upload_name(filename: str | None) -> str:
    """A safe local name for an uploaded file that keeps what the user will recognise."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "").name)[:100].lstrip(".")
    return name or DEFAULT_NAME


def create_job(
    session: Session,
    study: Study,
    access: Access,
    file_name: str,
    upload: BinaryIO,
    *,
    valid_subjects_only: bool,
    actor: audit.Actor,
) -> ImportJob:
    """Record a queued job with the uploaded file (read from `upload` in chunks; `file_name`
    made safe by `upload_name`), audited;
    first writes as failed the interrupted import jobs. The caller commits, then launches or
    runs it."""
    access.require(Permission.IMPORT)
    jobs.fail_interrupted(session, ImportJob, INTERRUPTED)
    job = ImportJob(
        study_id=study.id,
        file_name=file_name,
        valid_subjects_only=valid_subjects_only,
        requested_by_id=pk(access.user),
    )
    session.add(job)
    session.flush()
    size = seq = 0
    while block := upload.read(CHUNK_BYTES):
        session.execute(insert(ImportChunk), [{"job_id": job.id, "seq": seq, "data": block}])
        size += len(block)
        seq += 1
    job.file_size = size
    audit.record(
        session,
        actor=actor,
        action=AuditAction.IMPORT_REQUESTED,
        study_id=job.study_id,
        details=_details(
            job, f"{size} bytes" + (", valid subjects only" if valid_subjects_only else "")
        ),
    )
    return job


def launch(engine: Engine, study: Study, job_id: int, source: str = "web") -> threading.Thread:
    """Run a job in a background thread of this process."""
    thread = threading.Thread(
        target=run_job, args=(engine, study, job_id),
        kwargs={"source": source}, name=f"import-{job_id}", daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def run_job(
    engine: Engine,
    study: Study,
    job_id: int,
    *,
    source: str = "web",
    progress: Progress | None = None,
) -> None:
    """Claim a queued job and run it to done or failed; returns quietly if another process
    claimed it first. The progress is written between subjects (a short transaction of its
    own) and also told to `progress`. The import is recorded as the user who asked, through
    `source` (web, cli)."""
    if not jobs.claim(engine, ImportJob, job_id):
        return
    heartbeat = jobs.Heartbeat(engine, ImportJob, job_id)
    heartbeat.start()
    phase = ""

    def advance(name: str, done: int, total: int) -> None:
        nonlocal phase
        if name != phase:
            phase = name
            _set_phase(engine, job_id, name)
        heartbeat.progress(done, total)
        heartbeat.beat()
        if progress is not None:
            progress(name, done, total)

    try:
        with Session(engine) as session:
            job = session.get(ImportJob, job_id)
            user = session.get(UserAccount, job.requested_by_id) if job else None
            assert job is not None and user is not None
            access = load_access(session, user, job.study_id)
            session.expunge_all()  # read once; the import runs in sessions of its own
        with tempfile.TemporaryDirectory(prefix="trialdesk-import-") as folder:
            path = Path(folder) / job.file_name
            _write_upload(engine, job_id, path)
            report = import_odm(
                engine, study, path, access=access, actor=audit.Actor(user, source),
                valid_subjects_only=job.valid_subjects_only, progress=advance,
            )  # fmt: skip
        _finish(engine, job_id, report)
    except Exception as error:  # any failure must end the job, with its reason
        logger.exception("import job %s failed", job_id)
        _finish_failed(engine, job_id, f"{type(error).__name__}: {error}")
    finally:
        heartbeat.stop()


def _set_phase(engine: Engine, job_id: int, phase: str) -> None:
    with Session(engine) as session:
        session.execute(update(ImportJob).where(col(ImportJob.id) == job_id).values(phase=phase))
        session.commit()


def _write_upload(engine: Engine, job_id: int, path: Path) -> None:
    """Copy the stored upload to a local file, chunk by chunk, each in its own short query."""
    with path.open("wb") as out:
        seq = 0
        while True:
            with Session(engine) as session:
                chunk = session.get(ImportChunk, (job_id, seq))
            if chunk is None:
                return
            out.write(chunk.data)
            seq += 1


def _finish(engine: Engine, job_id: int, report: ImportReport) -> None:
    """Store the report and mark the job done, audited; nothing if the job is no longer this
    process's running job (it was failed as interrupted meanwhile)."""
    outcome = report.format().splitlines()[0]
    with Session(engine) as session:
        done = session.execute(
            update(ImportJob)
            .where(
                col(ImportJob.id) == job_id,
                col(ImportJob.state) == JobState.RUNNING,
                col(ImportJob.worker) == jobs.this_worker(),
            )
            .values(
                state=JobState.DONE, finished_at=utcnow(), report=report.to_json(), message=outcome
            )
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return
        job = session.get(ImportJob, job_id)
        assert job is not None
        _audit_job(session, job, AuditAction.IMPORT, outcome)
        session.commit()


def _finish_failed(engine: Engine, job_id: int, message: str) -> None:
    with Session(engine) as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            return
        job.state = JobState.FAILED
        job.finished_at = utcnow()
        job.message = message[:2000]
        _audit_job(session, job, AuditAction.IMPORT_FAILED, job.message)
        session.commit()


def _details(job: ImportJob, outcome: str) -> str:
    return f"job {job.id}: ODM import of {job.file_name}; {outcome}"[:500]


def _audit_job(session: Session, job: ImportJob, action: AuditAction, outcome: str) -> None:
    user = session.get(UserAccount, job.requested_by_id)
    audit.record(
        session, actor=audit.Actor(user, "import"), action=action, study_id=job.study_id,
        details=_details(job, outcome),
    )  # fmt: skip


def fail_interrupted(session: Session) -> int:
    """Write as failed the import jobs whose process stopped. Commits."""
    return jobs.fail_interrupted(session, ImportJob, INTERRUPTED)


def fail_own_running(session: Session) -> int:
    """When this process shuts down: mark its running import jobs failed. Commits."""
    return jobs.fail_own_running(session, ImportJob, INTERRUPTED)


# -- watching -------------------------------------------------------------------------------


def list_jobs(session: Session, access: Access, limit: int = 20) -> list[ImportJobView]:
    """The latest import jobs the user may see, newest first. Only reads."""
    access.require(Permission.IMPORT)
    now = utcnow()
    query = (
        select(ImportJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == ImportJob.requested_by_id)
        .where(ImportJob.study_id == access.study_id)
        .order_by(col(ImportJob.id).desc())
        .limit(limit)
    )
    return [
        ImportJobView(job, user.full_name, jobs.is_interrupted(job, now))
        for job, user in session.exec(query)
        if _visible(access, job)
    ]


def get_job(session: Session, access: Access, job_id: int) -> ImportJobView:
    """One job, if the user may see it (else NotFound). Only reads."""
    access.require(Permission.IMPORT)
    row = session.exec(
        select(ImportJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == ImportJob.requested_by_id)
        .where(col(ImportJob.id) == job_id)
    ).first()
    if row is None or not _visible(access, row[0]):
        raise NotFound(f"import job {job_id}")
    return ImportJobView(row[0], row[1].full_name, jobs.is_interrupted(row[0], utcnow()))


def _visible(access: Access, job: ImportJob) -> bool:
    """Study-wide importers see every import job of their study; an importer of some sites
    only the jobs they asked for (a report names subjects of every site in its file)."""
    if job.study_id != access.study_id:
        return False
    return access.site_ids(Permission.IMPORT) is None or job.requested_by_id == pk(access.user)

"""Export jobs: asked for on the export page or the API, run in the background, watched and
downloaded from any server process.

Everything about a job lives in the database: its request, state, progress, heartbeat and
result (a zip with the files and a manifest, stored in `export_chunk` rows). The process that
accepts a request runs it in a thread; a heartbeat shows it is alive. A job whose heartbeat
stops (its process was stopped or died) is interrupted: listing and reading show it as failed,
computed from the heartbeat without writing; the failure is written by the processes that run
jobs, when they start and whenever they create a job (e.g. starting one again). It can be
started again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, update
from sqlmodel import Session, col, select

from app import audit, jobs
from app.access import Access, Permission
from app.audit import AuditAction
from app.config import Settings
from app.crf.changes import NotFound
from app.db import make_engine
from app.exporters.odm_review import lock_status
from app.exporters.produce import ExportedFile, ExportKind, ExportRequest, file_manifest, produce
from app.exporters.scope import ExportScope, ScopeKind, subjects_only
from app.models import (
    ExportChunk,
    ExportJob,
    ExportState,
    Site,
    Subject,
    UserAccount,
    pk,
    utcnow,
)
from app.study.loader import Study

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
INTERRUPTED = jobs.INTERRUPTED


@dataclass(frozen=True)
class JobView:
    """A job as pages and the API show it: use `state` and `message`, not the job's own, which
    an interrupted job has not had written yet."""

    job: ExportJob
    requested_by: str
    interrupted: bool

    @property
    def state(self) -> str:
        return ExportState.FAILED if self.interrupted else self.job.state

    @property
    def message(self) -> str | None:
        return INTERRUPTED if self.interrupted else self.job.message

    @property
    def percent(self) -> int:
        if self.job.state == ExportState.DONE:
            return 100
        total = self.job.progress_total
        # Writing and storing the files follows the last subject: not done until stored.
        return min(99, int(100 * self.job.progress_done / total)) if total else 0

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(json.loads(self.job.manifest)) if self.job.manifest else []


# -- asking for an export -------------------------------------------------------------------


def job_request(job: ExportJob) -> ExportRequest:
    """The request a job was created for."""
    scope = ExportScope(
        study_id=job.study_id,
        kind=ScopeKind(job.scope_kind),
        site_id=job.site_id,
        dose_level=job.dose_level,
        phase=job.phase,
        subject_id=job.subject_id,
        changed_since=job.changed_since,
    )
    formats = frozenset(filter(None, job.formats.split(",")))
    return ExportRequest(ExportKind(job.kind), scope, formats)


def check_scope(session: Session, study: Study, access: Access, scope: ExportScope) -> None:
    """Refuse a scope the user may not export, or one that names nothing: a subject or site
    out of the user's reach is NotFound, as everywhere."""
    access.require(Permission.EXPORT)
    if scope.study_id != access.study_id:
        raise NotFound(f"study {scope.study_id}")
    if scope.kind is ScopeKind.SITE:
        site = session.get(Site, scope.site_id)
        if site is None or site.study_id != scope.study_id:
            raise NotFound(f"site {scope.site_id}")
        if not access.can(Permission.EXPORT, scope.site_id):
            raise NotFound(f"site {scope.site_id}")
    if scope.kind is ScopeKind.SUBJECT:
        subject = session.get(Subject, scope.subject_id)
        if (
            subject is None
            or subject.study_id != scope.study_id
            or not access.can(Permission.EXPORT, subject.site_id)
        ):
            raise NotFound(f"subject {scope.subject_id}")
    if scope.kind is ScopeKind.COHORT:
        levels = {level.code for level in study.info.dose_levels}
        phases = {phase.code for phase in study.info.phases}
        if scope.dose_level not in levels:
            raise ValueError(f"unknown dose level {scope.dose_level}; levels: {sorted(levels)}")
        if scope.phase is not None and scope.phase not in phases:
            raise ValueError(f"unknown phase {scope.phase}; phases: {sorted(phases)}")
    if access.site_ids(Permission.EXPORT) is not None and scope.kind in (
        ScopeKind.STUDY,
        ScopeKind.COHORT,
    ):
        raise ValueError("exports of several sites need a study-wide role")


def create_job(
    session: Session, study: Study, access: Access, request: ExportRequest, actor: audit.Actor
) -> ExportJob:
    """Record a queued job after checking the user may export that scope, audited; first
    writes as failed the interrupted jobs (this process is about to run one: it acts on jobs).
    The caller commits before launching it."""
    check_scope(session, study, access, request.scope)
    fail_interrupted(session)
    scope = request.scope
    site_id = scope.site_id
    if scope.kind is ScopeKind.SUBJECT:
        # The subject's site, so that exporters of that site see the job.
        subject = session.get(Subject, scope.subject_id)
        site_id = subject.site_id if subject else None
    job = ExportJob(
        study_id=scope.study_id,
        kind=request.kind,
        formats=",".join(sorted(request.formats)) if request.kind is ExportKind.SDTM else "",
        scope_kind=scope.kind,
        site_id=site_id,
        dose_level=scope.dose_level,
        phase=scope.phase,
        subject_id=scope.subject_id,
        changed_since=scope.changed_since,
        scope_text=scope.describe(session),
        requested_by_id=pk(access.user),
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.EXPORT_REQUESTED,
        study_id=scope.study_id,
        details=f"job {job.id}: {request.kind.description}; {job.scope_text}",
    )
    return job


def launch(engine: Engine, study: Study, settings: Settings, job_id: int) -> threading.Thread:
    """Run a job in a background thread of this process."""
    thread = threading.Thread(
        target=run_job, args=(engine, study, settings, job_id), name=f"export-{job_id}", daemon=True
    )
    thread.start()
    return thread


# -- running --------------------------------------------------------------------------------


def run_job(engine: Engine, study: Study, settings: Settings, job_id: int) -> None:
    """Claim a queued job and run it to done or failed. Returns quietly if another process
    claimed it first. Reads through a snapshot engine so that a long export neither waits for
    nor holds up data entry."""
    if not jobs.claim(engine, ExportJob, job_id):
        return
    # The heartbeat runs until the result is stored: zipping and storing a large export
    # takes a while, and a silent job would be taken for an interrupted one.
    heartbeat = jobs.Heartbeat(engine, ExportJob, job_id)
    heartbeat.start()
    reader: Engine | None = None
    try:
        reader = make_engine(settings.database_url, reader=True)
        with Session(engine) as session:
            job = session.get(ExportJob, job_id)
            assert job is not None
            request = job_request(job)
        with tempfile.TemporaryDirectory(prefix="trialdesk-export-") as folder:
            out_dir = Path(folder) / "export"
            out_dir.mkdir()
            with Session(reader) as read_session:
                files = produce(
                    read_session, study, request, out_dir,
                    subjects_only(heartbeat.progress),
                )  # fmt: skip
                locks = lock_status(read_session, study.id)
            zip_path = Path(folder) / "export.zip"
            manifest = _package(out_dir, files, zip_path, locks)
            _store_result(engine, job_id, zip_path, manifest, _file_name(study, job_id, request))
    except Exception as error:  # any failure must end the job, with its reason
        logger.exception("export job %s failed", job_id)
        _finish_failed(engine, job_id, f"{type(error).__name__}: {error}")
    finally:
        heartbeat.stop()
        if reader is not None:
            reader.dispose()


def _file_name(study: Study, job_id: int, request: ExportRequest) -> str:
    scope = request.scope
    label = {
        ScopeKind.STUDY: "study",
        ScopeKind.SITE: f"site{scope.site_id}",
        ScopeKind.COHORT: "-".join(filter(None, [scope.dose_level, scope.phase])),
        ScopeKind.SUBJECT: f"subject{scope.subject_id}",
    }[scope.kind]
    return f"{study.info.oid.lower()}-{request.kind.replace('_', '-')}-{label}-job{job_id}.zip"


def _package(
    out_dir: Path, files: list[ExportedFile], zip_path: Path, locks: dict[str, Any]
) -> list[dict[str, Any]]:
    """Zip the files with a manifest.json: name, rows, bytes, SHA-256 of each, and the
    study's freeze or lock status when the export ran (`odm_review.lock_status`)."""
    manifest = file_manifest(out_dir, files)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for entry in manifest:
            zf.write(out_dir / entry["name"], entry["name"])
        zf.writestr("manifest.json", json.dumps({"files": manifest, "locks": locks}, indent=2))
    return manifest


def _store_result(
    engine: Engine, job_id: int, zip_path: Path, manifest: list[dict[str, Any]], name: str
) -> None:
    """Store the zip in chunks and mark the job done, in one transaction; stores nothing if
    the job is no longer this process's running job (it was failed as interrupted meanwhile)."""
    digest = hashlib.sha256()
    with Session(engine) as session, zip_path.open("rb") as handle:
        seq = 0
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
            session.execute(insert(ExportChunk), [{"job_id": job_id, "seq": seq, "data": block}])
            seq += 1
        count = len(manifest)
        rows = sum(entry["rows"] or 0 for entry in manifest)
        message = f"{count} file{'s' if count != 1 else ''}, {rows} rows"
        done = session.execute(
            update(ExportJob)
            .where(
                col(ExportJob.id) == job_id,
                col(ExportJob.state) == ExportState.RUNNING,
                col(ExportJob.worker) == jobs.this_worker(),
            )
            .values(
                state=ExportState.DONE,
                progress_done=ExportJob.progress_total,
                finished_at=utcnow(),
                file_name=name,
                file_size=zip_path.stat().st_size,
                sha256=digest.hexdigest(),
                manifest=json.dumps(manifest),
                message=message,
            )
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return
        job = session.get(ExportJob, job_id)
        assert job is not None
        _audit_job(session, job, AuditAction.EXPORT, message)
        session.commit()


def _finish_failed(engine: Engine, job_id: int, message: str) -> None:
    with Session(engine) as session:
        job = session.get(ExportJob, job_id)
        if job is None:
            return
        job.state = ExportState.FAILED
        job.finished_at = utcnow()
        job.message = message[:2000]
        _audit_job(session, job, AuditAction.EXPORT_FAILED, job.message)
        session.commit()


def _audit_job(session: Session, job: ExportJob, action: AuditAction, outcome: str) -> None:
    user = session.get(UserAccount, job.requested_by_id)
    audit.record(
        session,
        actor=audit.Actor(user, "export"),
        action=action,
        study_id=job.study_id,
        details=f"job {job.id}: {ExportKind(job.kind).description}; {job.scope_text}; {outcome}"[
            :500
        ],
    )


def fail_interrupted(session: Session, now: datetime | None = None) -> int:
    """Write as failed the export jobs whose process stopped (`jobs.fail_interrupted`)."""
    return jobs.fail_interrupted(session, ExportJob, now=now)


def fail_own_running(session: Session) -> int:
    """When this process shuts down: mark its running export jobs failed. Commits."""
    return jobs.fail_own_running(session, ExportJob)


# -- watching and downloading ---------------------------------------------------------------


def list_jobs(session: Session, access: Access, limit: int = 50) -> list[JobView]:
    """The latest export jobs, newest first, with who asked for them. Only reads."""
    access.require(Permission.EXPORT)
    now = utcnow()
    rows = session.exec(
        select(ExportJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == ExportJob.requested_by_id)
        .where(ExportJob.study_id == access.study_id)
        .order_by(col(ExportJob.id).desc())
        .limit(limit)
    )
    return [
        JobView(job, user.full_name, jobs.is_interrupted(job, now))
        for job, user in rows
        if _visible(access, job)
    ]


def get_job(session: Session, access: Access, job_id: int) -> JobView:
    """One job, if the user may see it (else NotFound). Only reads."""
    access.require(Permission.EXPORT)
    row = session.exec(
        select(ExportJob, UserAccount)
        .join(UserAccount, col(UserAccount.id) == ExportJob.requested_by_id)
        .where(col(ExportJob.id) == job_id)
    ).first()
    if row is None or not _visible(access, row[0]):
        raise NotFound(f"export job {job_id}")
    return JobView(row[0], row[1].full_name, jobs.is_interrupted(row[0], utcnow()))


def _visible(access: Access, job: ExportJob) -> bool:
    """Study-wide exporters see every job of their study; others only jobs of a site they
    export."""
    sites = access.site_ids(Permission.EXPORT)
    return job.study_id == access.study_id and (sites is None or job.site_id in sites)


def result_chunks(engine: Engine, job_id: int) -> Iterator[bytes]:
    """The stored zip of a done job, chunk by chunk, each read in its own short query."""
    seq = 0
    while True:
        with Session(engine) as session:
            chunk = session.get(ExportChunk, (job_id, seq))
        if chunk is None:
            return
        yield chunk.data
        seq += 1


def record_download(session: Session, job: ExportJob, actor: audit.Actor) -> None:
    """Audit that a user took an export's result away; the caller commits."""
    audit.record(
        session,
        actor=actor,
        action=AuditAction.EXPORT_DOWNLOAD,
        study_id=job.study_id,
        details=f"job {job.id}: {job.file_name} ({job.sha256})",
    )

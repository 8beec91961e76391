"""The sponsor's exports: a page and API endpoints to start an export job, watch its progress,
list past exports with their manifests, and download the result."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from app import audit, export_jobs
from app.access import Access, Permission
from app.crf.changes import NotFound
from app.db import unit_of_work
from app.export_jobs import JobView
from app.exporters.produce import (
    SDTM_FORMATS,
    BadExportRequest,
    ExportKind,
    ExportRequest,
    export_request,
)
from app.models import ExportJob, ExportState, Site, pk
from app.study.loader import Study
from app.web.api import STUDY_PREFIX, ApiError, FieldMessage
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

JobId = Annotated[int, PathParam(ge=1, le=2**62)]
ExporterDep = Annotated[Access, requires(Permission.EXPORT)]

pages = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
api = APIRouter(prefix=STUDY_PREFIX, tags=["exports"])


def start(
    request: Request, session: Session, study: Study, access: Access, export: ExportRequest
) -> ExportJob:
    """Create the job (checks the scope) and run it in this process's background."""
    source = "api" if request.url.path.startswith("/api/") else "web"
    try:
        with unit_of_work(session):
            job = export_jobs.create_job(
                session, study, access, export, audit.Actor(access.user, source)
            )
    except ValueError as error:
        raise BadExportRequest("scope", str(error)) from error
    state = request.app.state
    export_jobs.launch(state.engine, study, state.settings, pk(job))
    return job


def download(request: Request, session: Session, access: Access, job_id: int) -> Response:
    """Stream a done job's zip from the database, and audit that it was taken."""
    view = export_jobs.get_job(session, access, job_id)
    job = view.job
    if job.state != ExportState.DONE:
        raise NotFound(f"export job {job_id} has no result yet")
    source = "api" if request.url.path.startswith("/api/") else "web"
    with unit_of_work(session):
        export_jobs.record_download(session, job, audit.Actor(access.user, source))
    chunks: Iterator[bytes] = export_jobs.result_chunks(request.app.state.engine, job_id)
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{job.file_name}"',
            "Content-Length": str(job.file_size),
        },
    )


# -- pages ----------------------------------------------------------------------------------


def _page_context(session: Session, study: Study, access: Access) -> dict[str, Any]:
    sites = session.exec(select(Site).where(Site.study_id == study.id).order_by(Site.number))
    exporter_sites = access.site_ids(Permission.EXPORT)
    return {
        "access": access,
        "kinds": list(ExportKind),
        "formats": SDTM_FORMATS,
        "sites": [s for s in sites if exporter_sites is None or s.id in exporter_sites],
        "cohorts": [
            (f"{level.code}:{phase.code}", f"{level.code} {phase.label}")
            for level in study.info.dose_levels
            for phase in study.info.phases
        ]
        + [(level.code, f"{level.code} (all phases)") for level in study.info.dose_levels],
        "jobs": export_jobs.list_jobs(session, access),
    }


@pages.get("/exports")
def exports_page(
    request: Request, session: SessionDep, study: StudyDep, access: ExporterDep
) -> Response:
    return render(request, "exports.html", _page_context(session, study, access))


@pages.get("/exports/jobs")
def exports_jobs(request: Request, session: SessionDep, access: ExporterDep) -> Response:
    """The jobs table alone: the page polls it while a job runs."""
    return render(request, "_export_jobs.html", {"jobs": export_jobs.list_jobs(session, access)})


@pages.post("/exports")
def exports_start(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ExporterDep,
    kind: Annotated[str, Form(max_length=30)],
    scope: Annotated[str, Form(max_length=20)] = "study",
    formats: Annotated[list[str] | None, Form()] = None,
    site: Annotated[str | None, Form(max_length=4)] = None,
    cohort: Annotated[str | None, Form(max_length=40)] = None,
    subject: Annotated[str | None, Form(max_length=40)] = None,
    changed_since: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    try:
        since = _since_date(changed_since)
        export = export_request(
            session, study, kind=kind, formats=formats or [], scope=scope, site_number=site,
            cohort=cohort, subject_key=subject, changed_since=since,
        )  # fmt: skip
        start(request, session, study, access, export)
    except BadExportRequest as error:
        context = _page_context(session, study, access) | {"error": f"{error.field}: {error}"}
        return render(request, "exports.html", context, 422)
    return RedirectResponse("/exports", status_code=303)


def _since_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError as error:
        raise BadExportRequest("changed_since", f"{text!r} is not a date (YYYY-MM-DD)") from error
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pages.post("/exports/{job_id}/again")
def exports_again(
    request: Request, session: SessionDep, study: StudyDep, access: ExporterDep, job_id: JobId
) -> Response:
    """Start a new job with the request of an earlier one (e.g. one that was interrupted)."""
    earlier = export_jobs.get_job(session, access, job_id).job
    start(request, session, study, access, export_jobs.job_request(earlier))
    return RedirectResponse("/exports", status_code=303)


@pages.get("/exports/{job_id}/download")
def exports_download(
    request: Request, session: SessionDep, access: ExporterDep, job_id: JobId
) -> Response:
    return download(request, session, access, job_id)


# -- API ------------------------------------------------------------------------------------


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["odm_snapshot", "odm_transactional", "sdtm", "define"]
    formats: list[Literal["xpt", "json", "csv"]] = Field(
        default=["xpt", "json", "csv"], description="SDTM file formats"
    )
    scope: Literal["study", "site", "cohort", "subject"] = "study"
    site: str | None = Field(default=None, max_length=4, description="site number, e.g. 01")
    cohort: str | None = Field(
        default=None, max_length=40, description="dose level, optionally with phase: DL2:ESCALATION"
    )
    subject: str | None = Field(default=None, max_length=40, description="screening number")
    changed_since: datetime | None = Field(
        default=None, description="only data changed after this moment (ISO 8601, with zone)"
    )


class ExportFileOut(BaseModel):
    name: str
    rows: int | None
    bytes: int
    sha256: str


class ExportJobOut(BaseModel):
    id: int
    kind: str
    formats: list[str]
    scope: str
    state: str = Field(description="queued, running, done or failed")
    percent: int
    progress_done: int
    progress_total: int
    message: str | None
    requested_by: str
    requested_at: datetime
    finished_at: datetime | None
    file_name: str | None
    file_size: int | None
    sha256: str | None
    files: list[ExportFileOut]
    download: str | None = Field(description="URL of the zip once done")


def _job_out(study: Study, view: JobView) -> dict[str, Any]:
    job = view.job
    download = f"{STUDY_PREFIX.format(study_oid=study.info.oid)}/exports/{job.id}/download"
    return {
        **job.model_dump(),
        "state": view.state,
        "message": view.message,
        "formats": list(filter(None, job.formats.split(","))),
        "scope": job.scope_text,
        "percent": view.percent,
        "requested_by": view.requested_by,
        "files": view.files,
        "download": download if job.state == ExportState.DONE else None,
    }


@api.post("/exports", response_model=ExportJobOut, status_code=202)
def api_start(
    request: Request, session: SessionDep, study: StudyDep, access: ExporterDep, body: ExportIn
) -> dict[str, Any]:
    """Start an export job; poll `GET /exports/{id}` until `state` is done, then download."""
    if body.changed_since is not None and body.changed_since.tzinfo is None:
        raise ApiError(422, "The request is not valid.", [
            FieldMessage(field="body.changed_since", message="give a time zone, e.g. Z")
        ])  # fmt: skip
    try:
        export = export_request(
            session, study, kind=body.kind, formats=list(body.formats), scope=body.scope,
            site_number=body.site, cohort=body.cohort, subject_key=body.subject,
            changed_since=body.changed_since,
        )  # fmt: skip
        job = start(request, session, study, access, export)
    except BadExportRequest as error:
        raise ApiError(
            422, str(error), [FieldMessage(field=f"body.{error.field}", message=str(error))]
        ) from error
    return _job_out(study, export_jobs.get_job(session, access, pk(job)))


@api.get("/exports", response_model=list[ExportJobOut])
def api_list(session: SessionDep, study: StudyDep, access: ExporterDep) -> list[dict[str, Any]]:
    """Past and running exports of the study, newest first."""
    return [_job_out(study, view) for view in export_jobs.list_jobs(session, access)]


@api.get("/exports/{job_id}", response_model=ExportJobOut)
def api_read(
    session: SessionDep, study: StudyDep, access: ExporterDep, job_id: JobId
) -> dict[str, Any]:
    return _job_out(study, export_jobs.get_job(session, access, job_id))


@api.get("/exports/{job_id}/download", response_class=StreamingResponse)
def api_download(
    request: Request, session: SessionDep, access: ExporterDep, job_id: JobId
) -> Response:
    """The zip of a done export: its files and manifest.json (rows, bytes, SHA-256)."""
    return download(request, session, access, job_id)

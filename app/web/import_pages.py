"""The ODM import page: upload an ODM 1.3.2 file, which starts an import job (data managers
and administrators: Permission.IMPORT); the job's page shows its progress, then the import
report. The page lists the recent import jobs.

The upload is stored in the database with the job (`app.import_jobs`), so that any server
process can report on it; the process that accepts it runs the job in a thread. Its size is
bounded by MAX_UPLOAD_BYTES, larger than the app's limit for other requests (`app.main`
applies it to UPLOAD_PATH only): an ODM file of a whole study runs to megabytes. The file
name is made safe (`import_jobs.upload_name`) and names the audit trail's source,
`import:<file name>`.

The form posts through htmx, which sends the CSRF token as the `x-csrftoken` header: asgi-csrf
0.11 fails on a multipart body that carries the token as a field with python-multipart 0.0.26
and later (simonw/asgi-csrf#38, fix pending in #39). The field stays in the form for when it
is fixed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import audit, import_jobs
from app.access import Access, Permission
from app.db import unit_of_work
from app.models import pk
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

UPLOAD_PATH = "/admin/import"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest ODM upload: about a million values with their audit records."""

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ImportDep = Annotated[Access, requires(Permission.IMPORT)]


JobId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.get(UPLOAD_PATH)
def import_page(request: Request, session: SessionDep, access: ImportDep) -> Response:
    jobs = import_jobs.list_jobs(session, access)
    context = {"access": access, "jobs": jobs, "limit_mib": MAX_UPLOAD_BYTES // 2**20}
    return render(request, "import_odm.html", context)


@router.get(UPLOAD_PATH + "/jobs")
def import_jobs_list(request: Request, session: SessionDep, access: ImportDep) -> Response:
    """The jobs table alone: the import page polls it while a job runs."""
    return render(request, "_import_jobs.html", {"jobs": import_jobs.list_jobs(session, access)})


@router.post(UPLOAD_PATH)
def import_upload(
    request: Request,
    session: SessionDep,
    access: ImportDep,
    study: StudyDep,
    file: Annotated[UploadFile, File()],
    valid_subjects_only: Annotated[bool, Form()] = False,
) -> Response:
    """Store the upload as a queued import job, start it in this process's background and
    answer at once with the job's page (htmx: HX-Redirect; otherwise 303)."""
    with unit_of_work(session):
        job = import_jobs.create_job(
            session, study, access, import_jobs.upload_name(file.filename), file.file,
            valid_subjects_only=valid_subjects_only, actor=audit.Actor(access.user, "web"),
        )  # fmt: skip
    job_id = pk(job)
    import_jobs.launch(request.app.state.engine, study, job_id)
    target = f"{UPLOAD_PATH}/jobs/{job_id}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.get(UPLOAD_PATH + "/jobs/{job_id}")
def import_job_page(
    request: Request, session: SessionDep, access: ImportDep, job_id: JobId
) -> Response:
    """A job's state and progress, then its report; the page is 422 once done with a refused
    file, the part the page polls (htmx) always 200."""
    view = import_jobs.get_job(session, access, job_id)
    report = view.report
    if request.headers.get("hx-request"):  # the page polling: htmx swaps only a 200
        return render(request, "_import_job.html", {"view": view})
    status = 422 if report is not None and not report.stored else 200
    return render(request, "import_job.html", {"access": access, "view": view}, status)

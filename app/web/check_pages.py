"""The checks page: a study-wide data manager runs every edit check over the study, one site
or one subject (`app.checks.run_jobs`; a dry run changes nothing) and watches its progress;
the table of recent runs shows each one's findings by check, linked to their queries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import col, select

from app.access import Access, Permission
from app.checks import run_jobs
from app.db import unit_of_work
from app.models import Site, pk
from app.study.loader import Study
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
CheckerDep = Annotated[Access, requires(Permission.RUN_CHECKS)]
PAGE = "/checks"


def _page(
    request: Request, session: SessionDep, study: Study, access: Access, error: str = ""
) -> Response:
    sites = session.exec(
        select(Site).where(Site.study_id == study.id).order_by(col(Site.number))
    ).all()
    context = {
        "access": access, "sites": sites, "runs": run_jobs.list_jobs(session, access),
        "error": error,
    }  # fmt: skip
    return render(request, "checks.html", context, 422 if error else 200)


@router.get(PAGE)
def checks_page(
    request: Request, session: SessionDep, study: StudyDep, access: CheckerDep
) -> Response:
    return _page(request, session, study, access)


@router.get(PAGE + "/runs")
def check_runs(request: Request, session: SessionDep, access: CheckerDep) -> Response:
    """The runs table alone: the page polls it while a run is busy."""
    return render(request, "_check_runs.html", {"runs": run_jobs.list_jobs(session, access)})


@router.post(PAGE + "/runs")
def start_run(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: CheckerDep,
    site: Annotated[str, Form(max_length=20)] = "",
    subject: Annotated[str, Form(max_length=40)] = "",
    dry_run: Annotated[bool, Form()] = False,
) -> Response:
    """Queue a run, start it in this process's background, and show the page with it."""
    try:
        with unit_of_work(session):
            job = run_jobs.create_job(
                session, study, access, site_number=site.strip() or None,
                subject_key=subject.strip() or None, dry_run=dry_run,
            )  # fmt: skip
    except LookupError as unknown:
        return _page(request, session, study, access, error=str(unknown.args[0]))
    run_jobs.launch(request.app.state.engine, study, pk(job))
    return RedirectResponse(PAGE, status_code=303)

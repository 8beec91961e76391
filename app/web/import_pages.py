"""The ODM import page: upload an ODM 1.3.2 file, see the import report (data managers and
administrators: Permission.IMPORT).

The upload is copied in chunks to a temporary file named like the uploaded one (the audit
trail's source is `import:<file name>`), read from there and deleted. Its size is bounded by
MAX_UPLOAD_BYTES, larger than the app's limit for other requests (`app.main` applies it to
UPLOAD_PATH only): an ODM file of a whole study runs to megabytes.

The form posts through htmx, which sends the CSRF token as the `x-csrftoken` header: asgi-csrf
0.11 fails on a multipart body that carries the token as a field with python-multipart 0.0.26
and later (simonw/asgi-csrf#38, fix pending in #39). The field stays in the form for when it
is fixed.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from app import audit
from app.access import Access, Permission
from app.importers.odm_import import ImportReport, import_odm
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import render

UPLOAD_PATH = "/admin/import"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest ODM upload: about a million values with their audit records."""
DEFAULT_NAME = "upload.xml"

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ImportDep = Annotated[Access, requires(Permission.IMPORT)]


@router.get(UPLOAD_PATH)
def import_page(request: Request, access: ImportDep) -> Response:
    return _page(request, access)


@router.post(UPLOAD_PATH)
def import_upload(
    request: Request,
    session: SessionDep,
    access: ImportDep,
    study: StudyDep,
    file: Annotated[UploadFile, File()],
    valid_subjects_only: Annotated[bool, Form()] = False,
) -> Response:
    """Import the uploaded file in the request's session (authentication has committed what
    it wrote, so a refused import rolls back only its own work); 422 when refused."""
    with tempfile.TemporaryDirectory(prefix="trialdesk-import-") as folder:
        path = Path(folder) / upload_name(file.filename)
        with path.open("wb") as copy:
            shutil.copyfileobj(file.file, copy, length=1024 * 1024)
        report = import_odm(
            session, study, path, access=access, actor=audit.Actor(access.user, "web"),
            valid_subjects_only=valid_subjects_only,
        )  # fmt: skip
    if report.stored:
        session.commit()
    else:
        session.rollback()
    return _page(request, access, report, 200 if report.stored else 422)


def upload_name(filename: str | None) -> str:
    """A safe local name for an uploaded file that keeps what the user will recognise."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "").name)[:100].lstrip(".")
    return name or DEFAULT_NAME


def _page(
    request: Request, access: Access, report: ImportReport | None = None, status: int = 200
) -> Response:
    context = {"access": access, "report": report, "limit_mib": MAX_UPLOAD_BYTES // 2**20}
    return render(request, "import_odm.html", context, status)

"""The ODM import page: upload an ODM 1.3.2 file, see the import report (data managers and
administrators: Permission.IMPORT).

The upload is copied in chunks to a temporary file named like the uploaded one (the audit
trail's source is `import:<file name>`), read from there and deleted. Its size is bounded by
MAX_UPLOAD_BYTES, larger than the app's limit for other requests (`app.main` applies it to
UPLOAD_PATH only): an ODM file of a whole study runs to megabytes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from app import audit
from app.access import Access, Permission
from app.importers.odm_import import ImportReport, import_odm
from app.web.deps import StudyDep, requires
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
    access: ImportDep,
    study: StudyDep,
    file: Annotated[UploadFile, File()],
    valid_subjects_only: Annotated[bool, Form()] = False,
) -> Response:
    """Import the uploaded file in its own session (the request's session holds the login's
    transaction, which a refused import must not roll back); 422 when refused."""
    with tempfile.TemporaryDirectory(prefix="trialdesk-import-") as folder:
        path = Path(folder) / upload_name(file.filename)
        with path.open("wb") as copy:
            shutil.copyfileobj(file.file, copy, length=1024 * 1024)
        with Session(request.app.state.engine) as session:
            report = import_odm(
                session, study, path, actor=audit.Actor(access.user, "web"),
                valid_subjects_only=valid_subjects_only,
            )  # fmt: skip
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

"""Source data verification pages: the monitor's list of what is due, verified and dropped
per site (`/sdv`), and the verify and withdraw buttons of a form's verification panel, which
go through the write path (`app.crf.write.apply`, which checks the permission at the
subject's site).

Only users who verify (monitors) open `/sdv`, and see only their sites; site users are
refused: which subjects the sample holds is the monitor's to know, not the site's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from app.access import Access, Permission
from app.crf.changes import FormRef, VerifyForm, WithdrawVerification
from app.review.sdv_reads import sdv_by_site
from app.web.deps import SessionDep, StudyDep, requires
from app.web.pages import FORM_PATH, render
from app.web.review_posts import apply_and_go_back

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
VerifierDep = Annotated[Access, requires(Permission.VERIFY_DATA)]
SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
Repeat = Annotated[int, PathParam(ge=1, le=9999)]


@router.get("/sdv")
def sdv_page(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: VerifierDep,
    site: Annotated[str, Query(max_length=4)] = "",
) -> Response:
    """Per site of the monitor's: the complete forms the SDV plan asks to verify, by state,
    each linked to its form; `site` (a site number) shows one site."""
    sites = sdv_by_site(session, study, access.site_ids(Permission.VERIFY_DATA))
    shown = [entry for entry in sites if not site or entry.site.number == site]
    context = {
        "access": access, "sites": sites, "shown": shown, "site": site,
        "has_plan": study.sdv is not None,
    }  # fmt: skip
    return render(request, "sdv.html", context)


@router.post(FORM_PATH + "/verify")
def verify_form(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: VerifierDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
    version: Annotated[int, Form(ge=0, le=2**31)],
) -> Response:
    """Verify the form at the version the monitor saw."""
    ref = FormRef(event_oid, event_repeat, form_oid, form_repeat)
    back = FORM_PATH.format(**vars(ref), subject_id=subject_id)
    change = VerifyForm(subject_id, ref, version)
    return apply_and_go_back(request, session, study, access, change, back + "#sdv-title")


@router.post(FORM_PATH + "/verify/withdraw")
def withdraw_verification(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: VerifierDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Withdraw the form's verification (given by mistake), with the reason."""
    ref = FormRef(event_oid, event_repeat, form_oid, form_repeat)
    back = FORM_PATH.format(**vars(ref), subject_id=subject_id)
    change = WithdrawVerification(subject_id, ref, reason)
    return apply_and_go_back(request, session, study, access, change, back + "#sdv-title")

"""The investigator signs a casebook or a form, posted from its page. The signing goes
through the write path (`app.crf.write.apply`), which checks the permission, the password
and what refuses it; a wrong password is audited and counted toward the account's lockout
in a transaction of its own (the refused signing rolls back)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import audit
from app.access import Access, Permission
from app.crf import write
from app.crf.changes import FormRef, Refused, Sign
from app.db import unit_of_work
from app.models import utcnow
from app.review.signatures import WrongPassword, record_failed_signing
from app.web.deps import CallerDep, SessionDep, StudyDep, requires
from app.web.pages import render
from app.web.query_pages import local_path

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
SignerDep = Annotated[Access, requires(Permission.SIGN)]
Oid = Annotated[str, Form(max_length=60)]
Repeat = Annotated[int, Form(ge=1, le=9999)]


@router.post("/subjects/{subject_id}/signatures")
def sign(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: SignerDep,
    caller: CallerDep,
    subject_id: Annotated[int, PathParam(ge=1, le=2**62)],
    password: Annotated[str, Form(max_length=200)] = "",
    username: Annotated[str, Form(max_length=80)] = "",
    event_oid: Oid = "",
    event_repeat: Repeat = 1,
    form_oid: Oid = "",
    form_repeat: Repeat = 1,
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Sign the casebook, or (with `event_oid` and `form_oid`) one form. Only a person logged
    in to the browser signs: an API token is no password."""
    back = local_path(next, f"/subjects/{subject_id}")
    if caller.login_session is None:
        return _refused(request, access, "A signature needs your password: sign on the page.", back)
    ref = FormRef(event_oid, event_repeat, form_oid, form_repeat) if form_oid else None
    change = Sign(subject_id, ref, password, username.strip() or None, caller.login_session.id)
    now = utcnow()
    actor = audit.Actor(access.user)
    try:
        with unit_of_work(session):
            write.apply(session, study, change, by=write.Author(access, actor), now=now)
    except WrongPassword as wrong:
        with unit_of_work(session):
            record_failed_signing(session, wrong, actor.source, now)
        return _refused(request, access, str(wrong), back)
    except Refused as refused:
        return _refused(request, access, str(refused), back)
    return RedirectResponse(back + "#signatures", status_code=303)


def _refused(request: Request, access: Access, message: str, back: str) -> Response:
    context = {"title": "Not signed", "message": message, "access": access, "home": back}
    return render(request, "message.html", context, 409)

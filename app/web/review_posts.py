"""What the review pages' posts share (freeze and lock, source data verification): make the
change through the write path as the logged-in user, in one unit of work, then go back to the
page it came from; a refusal is a page that says why, and nothing changed."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from app import audit
from app.access import Access
from app.crf import write
from app.crf.changes import Change, Refused
from app.db import unit_of_work
from app.models import utcnow
from app.study.loader import Study
from app.web.pages import render


def apply_and_go_back(
    request: Request, session: Session, study: Study, access: Access, change: Change, back: str
) -> Response:
    """303 to `back` once `change` is stored; 409 with the refusal's message otherwise (NotFound
    propagates: a 404, as on every page)."""
    try:
        with unit_of_work(session):
            author = write.Author(access, audit.Actor(access.user))
            write.apply(session, study, change, by=author, now=utcnow())
    except Refused as refused:
        context = {"title": "Nothing changed", "message": str(refused), "access": access}
        return render(request, "message.html", context, 409)
    return RedirectResponse(back, status_code=303)

"""What the casebook and form pages show of electronic signatures: the panel with the
valid signature or the broken one ("Signature broken by ..., sign again"), the sign form
(the meaning stated, the password, and the username too at a session's first signing) and
the history of every signature of what the page shows."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlmodel import Session

from app import auth
from app.access import Access, Permission
from app.crf.changes import FormRef
from app.models import Signature, Subject
from app.review.signatures import intact, ref_of, signatures_of
from app.study.loader import Study
from app.web.deps import SESSION_COOKIE


@dataclass(frozen=True)
class SigningPanel:
    """The signature panel of a casebook (`ref` None) or of a signed form."""

    ref: FormRef | None
    meaning: str
    valid: Signature | None
    """The signature in force, if any."""
    intact: bool
    """Whether the data still hash to what `valid` signed (True without one)."""
    broken: Signature | None
    """The latest broken signature, when none is in force: the investigator signs again."""
    history: list[tuple[str, Signature]]
    """(what it signs, signature), newest first: the casebook lists its forms' too."""
    can_sign: bool
    ask_username: bool
    """The first signature of this login session asks both components."""


def signature_context(
    request: Request, session: Session, study: Study, access: Access, subject: Subject,
    ref: FormRef | None = None,
) -> dict[str, object]:  # fmt: skip
    """Template variables `signing`: the panel, or None when the study does not sign what the
    page shows; and, for the casebook's list of forms, `form_signatures`: (event OID, repeat,
    form OID, repeat) -> "signed" or "signature broken", the state of each signed form."""
    settings = study.signatures
    meaning = settings.meaning_of(ref.form_oid if ref else None) if settings else None
    every = signatures_of(session, subject) if settings else []
    states: dict[tuple[str, int, str, int], str] = {}
    for signature in reversed(every):  # oldest first: the latest of each form stays
        form = ref_of(signature)
        if ref is None and form is not None:
            key = (form.event_oid, form.event_repeat, form.form_oid, form.form_repeat)
            states[key] = "signature broken" if signature.broken_at else "signed"
    if meaning is None:
        return {"signing": None, "form_signatures": states}
    mine = [signature for signature in every if ref_of(signature) == ref]
    valid = next((signature for signature in mine if signature.broken_at is None), None)
    shown = every if ref is None else mine
    history = [(_what(study, signature), signature) for signature in shown]
    token = request.cookies.get(SESSION_COOKIE)
    login_session = auth.login_session_of(session, token) if token else None
    panel = SigningPanel(
        ref=ref, meaning=meaning, valid=valid,
        intact=valid is None or intact(session, subject, valid),
        broken=mine[0] if mine and valid is None else None, history=history,
        can_sign=access.can(Permission.SIGN, subject.site_id) and login_session is not None,
        ask_username=login_session is None or login_session.signed_at is None,
    )  # fmt: skip
    return {"signing": panel, "form_signatures": states}


def _what(study: Study, signature: Signature) -> str:
    ref = ref_of(signature)
    if ref is None:
        return "Casebook"
    form = study.forms.get(ref.form_oid)
    visit = study.visit(ref.event_oid)
    title = form.title if form else ref.form_oid
    return f"{title} ({visit.name if visit else 'Logs'})"

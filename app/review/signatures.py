"""Electronic signatures (21 CFR Part 11): the investigator signs a subject's casebook or the
forms the study names (`signatures.yaml`), giving the password again.

A signature records the signer's printed name, the date and time (UTC), its meaning, and the
SHA-256 of the signed values (`app.review.signed_content`), so that it stays bound to what was signed.
Signing is a `Sign` change through the write path: refused while the signed data have open
or answered queries (when the study says so) and on locked data (a freeze, which stops data
changes only, lets the investigator sign: signing changes no data; a lock stops everything).
The write path's consequences step breaks, in the change's own transaction, every signature
whose signed data a change touches (`plan_breaks`): values, a form marked not done, forms
re-derived from it, and, for the casebook, a visit date. A broken signature stays, with what
broke it, by whom and when; the investigator signs again (a new row).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from app import audit, auth
from app.audit import AuditAction
from app.crf import reads
from app.crf.changes import FormRef, Refused, Sign
from app.models import (
    FormStatus,
    LoginSession,
    Query,
    QueryState,
    Signature,
    Subject,
    UserAccount,
    pk,
)
from app.review.signed_content import content_hash
from app.study.loader import Study

if TYPE_CHECKING:
    from app.crf.plans import FormPlan, Plan

MAX_CHANGE_TEXT = 500
"""Longest description of what broke a signature (it is also an audit record's reason)."""

SIGNED_STATES = (FormStatus.COMPLETE, FormStatus.NOT_DONE)
"""A form is signed once the site has finished it: complete, or not done."""


class SignatureRefused(Refused):
    """A signing that cannot be made now; the message says why."""


class WrongPassword(SignatureRefused):
    """The username or password given to sign is wrong: the caller records it (audited, and
    counted toward the account's lockout, as a failed login is) in a new transaction,
    `record_failed_signing`, since the refused change rolls back."""

    def __init__(self, user_id: int, subject: Subject, ref: FormRef | None) -> None:
        super().__init__("The username or password is wrong. Nothing was signed.")
        self.user_id, self.subject, self.ref = user_id, subject, ref


@dataclass
class SignaturePlan:
    """A signature to store (`signature.id` None), with the login session whose first
    signature it is, or a stored one to break (`signature.broken_*` set)."""

    signature: Signature
    first_in_session: LoginSession | None = None


# -- reads ------------------------------------------------------------------------------------


def ref_of(signature: Signature) -> FormRef | None:
    """The form a signature signs, or None for the casebook."""
    if signature.form_oid is None:
        return None
    assert signature.event_oid is not None
    assert signature.event_repeat is not None and signature.form_repeat is not None
    return FormRef(signature.event_oid, signature.event_repeat, signature.form_oid,
                   signature.form_repeat)  # fmt: skip


def intact(session: Session, subject: Subject, signature: Signature) -> bool:
    """Whether the stored data still hash to what was signed (a valid signature whose data
    changed by any way around the write path shows as not matching)."""
    return content_hash(session, subject, ref_of(signature)) == signature.content_hash


_SIGNATURES = (
    select(Signature)
    .where(col(Signature.subject_id) == bindparam("subject_id"))
    .order_by(col(Signature.id).desc())
)
"""Built once: every save runs it (building a statement costs more than running it)."""


def signatures_of(session: Session, subject: Subject) -> list[Signature]:
    """Every signature of the subject, valid and broken, newest first."""
    return list(session.exec(_SIGNATURES, params={"subject_id": subject.id}))


def _signs(signature: Signature, ref: FormRef | None) -> bool:
    return ref_of(signature) == ref


# -- signing ----------------------------------------------------------------------------------


def plan_signing(
    session: Session, study: Study, subject: Subject, change: Sign, user: UserAccount,
    now: datetime,
) -> SignaturePlan:  # fmt: skip
    """The signature `change` asks for, once the study signs what it names, the form is
    finished, it is not already signed, no query on it waits (if the study says so) and the
    signer gave their password (and username, at a session's first signing). The lock
    check is the guard step's."""
    settings = study.signatures
    ref = change.ref
    meaning = settings.meaning_of(ref.form_oid if ref else None) if settings else None
    if settings is None or meaning is None:
        what = "casebooks" if ref is None else "this form"
        raise SignatureRefused(f"This study does not sign {what}.")
    if ref is not None:
        form = reads.scheduled_form(session, study, subject, ref)
        stored = reads.load_form(session, subject, form, ref)
        if stored is None or stored.form_data.status not in SIGNED_STATES:
            raise SignatureRefused(
                f"{form.title} can be signed once it is complete (or marked not done)."
            )
    what = "This casebook" if ref is None else "This form"
    for signature in signatures_of(session, subject):
        if signature.broken_at is None and _signs(signature, ref):
            raise SignatureRefused(
                f"{what} is already signed by {signature.signer_name} on "
                f"{signature.signed_at:%Y-%m-%d %H:%M} UTC."
            )
    waiting = waiting_queries(session, subject, ref)
    if settings.refuse_with_open_queries and waiting:
        plural = "query waits" if waiting == 1 else "queries wait"
        raise SignatureRefused(
            f"{what} cannot be signed while {waiting} {plural} for an answer or a close."
        )
    first = _check_signer(session, subject, change, user, now)
    signature = Signature(
        study_id=subject.study_id, subject_id=pk(subject),
        event_oid=ref.event_oid if ref else None, event_repeat=ref.event_repeat if ref else None,
        form_oid=ref.form_oid if ref else None, form_repeat=ref.form_repeat if ref else None,
        signer_id=pk(user), signer_name=user.full_name, meaning=meaning, signed_at=now,
        content_hash=content_hash(session, subject, ref),
    )  # fmt: skip
    return SignaturePlan(signature, first_in_session=first)


def waiting_queries(session: Session, subject: Subject, ref: FormRef | None) -> int:
    """Open or answered queries on the signed data (the casebook: any of the subject's)."""
    statement = sa_select(func.count()).where(
        col(Query.subject_id) == subject.id,
        col(Query.state).in_((QueryState.OPEN, QueryState.ANSWERED)),
    )
    if ref is not None:
        statement = statement.where(
            col(Query.event_oid) == ref.event_oid, col(Query.event_repeat) == ref.event_repeat,
            col(Query.form_oid) == ref.form_oid, col(Query.form_repeat) == ref.form_repeat,
        )  # fmt: skip
    return int(session.execute(statement).scalar_one())


def _check_signer(
    session: Session, subject: Subject, change: Sign, user: UserAccount, now: datetime
) -> LoginSession | None:
    """Refuse unless the signer gave both components (the first signing of a login session,
    or a signing outside one) or, later in the same session, the password. Returns the login
    session when this is its first signing."""
    login_session = None
    if change.login_session_id is not None:
        login_session = session.get(LoginSession, change.login_session_id)
        if login_session is None or login_session.user_id != user.id or login_session.ended_at:
            raise SignatureRefused("Your login session has ended; log in again to sign.")
    both = login_session is None or login_session.signed_at is None
    if not change.password:
        raise SignatureRefused("Give your password to sign.")
    if both and not change.username:
        raise SignatureRefused(
            "The first signature of a session needs your username and your password."
        )
    if auth.is_locked(user, now):
        raise SignatureRefused("This account is locked after repeated wrong passwords; try later.")
    username_wrong = change.username is not None and change.username != user.username
    if username_wrong or not auth.verify_password(user, change.password):
        raise WrongPassword(pk(user), subject, change.ref)
    return login_session if both else None


def record_failed_signing(
    session: Session, refused: WrongPassword, source: str, now: datetime
) -> None:
    """Audit a signing refused for a wrong username or password and count it toward the
    account's lockout (the caller commits, in a transaction of its own)."""
    user = session.get(UserAccount, refused.user_id)
    assert user is not None
    details = auth.count_failure(session, user, now)
    subject, ref = refused.subject, refused.ref
    what = f"subject {subject.subject_key}" + (
        f", {ref.event_oid} #{ref.event_repeat} {ref.form_oid} #{ref.form_repeat}" if ref else ""
    )
    # Like a failed login, a security event, not a change of the subject's data: it names
    # what was to be signed, but has no data path (an export's AuditRecord is a data change's).
    audit.record(
        session, actor=audit.Actor(user, source), action=AuditAction.SIGN_FAILED,
        study_id=subject.study_id, details=f"{details}; signing {what}", at=now,
    )  # fmt: skip


# -- breaking ---------------------------------------------------------------------------------


def plan_breaks(
    session: Session, study: Study, plan: Plan, user: UserAccount | None, now: datetime
) -> list[SignaturePlan]:
    """The valid signatures of the plan's subject that the stored change touches: a form's
    signature when its values or status changed (the form saved, or re-derived from it),
    the casebook's when any form or a visit date changed. Each is marked broken by what
    changed, who changed it and when."""
    subject = plan.subject
    assert subject is not None
    changed = {form.ref: _form_change(study, form) for form in plan.forms if _touched(form)}
    visit = plan.visit
    casebook_change = list(changed.values())
    if visit is not None and visit.old != visit.new:
        name = _event_name(study, visit.event_oid, visit.event_repeat)
        old = visit.old.isoformat() if visit.old else "none"
        casebook_change.append(f"visit date of {name} changed from {old} to {visit.new}")
    if not casebook_change:
        return []
    breaks = []
    for signature in signatures_of(session, subject):
        if signature.broken_at is not None:
            continue
        ref = ref_of(signature)
        what = "; ".join(casebook_change) if ref is None else changed.get(ref)
        if what is None:
            continue
        signature.broken_at = now
        signature.broken_by_name = user.full_name if user else "TrialDesk (system)"
        signature.broken_by_change = _shortened(what)
        breaks.append(SignaturePlan(signature))
    return breaks


def _touched(form: FormPlan) -> bool:
    """Whether the stored change alters what `signed_content` holds of the form."""
    stored = form.stored.form_data if form.stored else None
    return (
        bool(form.changes) or form.status_changed or stored is None
        or stored.definition_version != form.definition_version
        or stored.not_done_reason != form.not_done_reason
    )  # fmt: skip


def _form_change(study: Study, form: FormPlan) -> str:
    """What changed in a form, as a signature broken by it says: "Eligibility Criteria
    (Screening): IE.IEYN, IE.IECAT changed"."""
    where = f"{form.form.title} ({_event_name(study, form.ref.event_oid, form.ref.event_repeat)})"
    if form.status_changed and form.status == FormStatus.NOT_DONE:
        return f"{where} marked not done"
    names = form.form.item_names
    items = sorted({f"{form.form.name}.{names.get(c.item_oid, c.item_oid)}" for c in form.changes})
    if not items and form.status_changed:
        return f"{where}: status changed from {form.old_status} to {form.status}"
    if not items:
        return f"{where}: stored again under {form.definition_version}"
    return f"{where}: {', '.join(items)} changed"


def _event_name(study: Study, event_oid: str, repeat: int) -> str:
    visit = study.visit(event_oid)
    name = visit.name if visit else "Logs"
    return f"{name} #{repeat}" if repeat > 1 else name


def _shortened(text: str) -> str:
    return text if len(text) <= MAX_CHANGE_TEXT else text[: MAX_CHANGE_TEXT - 1] + "…"


# -- audit ------------------------------------------------------------------------------------


def _path(subject: Subject, ref: FormRef | None) -> audit.DataPath:
    if ref is None:
        return audit.DataPath(subject)
    return audit.DataPath(subject, ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)


def signature_audit_entries(
    subject: Subject, plans: list[SignaturePlan], actor: audit.Actor, now: datetime
) -> list[dict[str, Any]]:
    """A SIGN record for each new signature (its meaning and the hash of what it signs), a
    SIGNATURE_BROKEN record for each broken one (what broke it, as the reason)."""
    entries = []
    for plan in plans:
        signature = plan.signature
        path = _path(subject, ref_of(signature))
        details = f"signature {pk(signature)}"
        if signature.broken_at is None:
            entries.append(
                audit.entry(
                    actor=actor, action=AuditAction.SIGN, path=path, new_value=signature.meaning,
                    details=f"{details}; sha256 {signature.content_hash}", at=now,
                )
            )  # fmt: skip
        else:
            entries.append(
                audit.entry(
                    actor=actor, action=AuditAction.SIGNATURE_BROKEN, path=path,
                    old_value=signature.meaning, reason=signature.broken_by_change,
                    details=details, at=now,
                )
            )  # fmt: skip
    return entries

"""Source data verification (SDV) in the write path: a monitor verifies a complete form (or
each item the study's SDV plan lists for it) at the version they saw, or withdraws a
verification with a reason; a change to a verified value drops the verification in the
same transaction (the consequences step of `app.crf.write`), naming what changed, who
changed it and in which form version. The plan decides what needs verifying
(`app.study.sdv_plan`); `app.review.sdv_reads` says where each form stands.

A freeze lets verification go on; a lock stops it (`app.review.locks.refusal` with
`queries_only`, as for queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam
from sqlmodel import Session, col, func, select

from app.crf.changes import FormRef, Refused
from app.crf.reads import StoredForm
from app.models import FormStatus, SourceVerification, Subject, pk
from app.study.loader import Study, find_item
from app.study.sdv_plan import Requirement, requirement

if TYPE_CHECKING:  # plans hold verification plans: imported for the type only
    from app.crf.plans import Plan


class VerificationRefused(Refused):
    """A verification that cannot be made or withdrawn now; the message says why."""


@dataclass(frozen=True)
class VerificationEnd:
    """How a verification ends: withdrawn by a monitor (`reason`) or dropped by a change to
    a verified value (`changed_items`, item OIDs, and the form version that changed them)."""

    by_name: str
    reason: str | None = None
    changed_items: tuple[str, ...] = ()
    changed_in_version: int | None = None


@dataclass
class VerificationPlan:
    """A verification to store (`row.id` None, `end` None) or to end."""

    row: SourceVerification
    end: VerificationEnd | None = None


def site_rank(session: Session, subject: Subject) -> int:
    """The subject's place (from 1) in the order its site registered subjects."""
    earlier = select(func.count()).where(
        col(Subject.site_id) == subject.site_id, col(Subject.id) <= subject.id
    )
    return int(session.exec(earlier).one())


def form_requirement(
    session: Session, study: Study, subject: Subject, form_oid: str
) -> Requirement | None:
    """What the study's SDV plan asks to verify of this subject's form, or None."""
    if study.sdv is None:
        return None
    rank = site_rank(session, subject)
    return requirement(study.sdv, study.info.oid, subject.subject_key, rank, form_oid)


def item_oids(study: Study, form_oid: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The OIDs of the named items of a form (the study check made sure they exist)."""
    form = study.forms[form_oid]
    return tuple(found[1].oid for name in names if (found := find_item(form, name)))


_IN_FORCE = (
    select(SourceVerification)
    .where(
        col(SourceVerification.subject_id) == bindparam("subject_id"),
        col(SourceVerification.ended_at).is_(None),
    )
    .order_by(col(SourceVerification.id))
)
"""Built once: every save runs it (building a statement costs more than running it)."""


def active_verifications(
    session: Session, subject: Subject, ref: FormRef | None = None
) -> list[SourceVerification]:
    """The subject's verifications in force, of one form instance when `ref` is given."""
    statement = _IN_FORCE
    if ref is not None:
        statement = statement.where(
            SourceVerification.event_oid == ref.event_oid,
            SourceVerification.event_repeat == ref.event_repeat,
            SourceVerification.form_oid == ref.form_oid,
            SourceVerification.form_repeat == ref.form_repeat,
        )
    return list(session.exec(statement, params={"subject_id": subject.id}))


def plan_verify(
    session: Session, study: Study, subject: Subject, ref: FormRef, stored: StoredForm | None,
    base_version: int, by_name: str,
) -> list[VerificationPlan]:  # fmt: skip
    """New verifications of a complete form as the SDV plan asks: the whole form, or each
    listed item not verified yet. Refused when the form is not complete, was saved since
    the monitor opened it, needs no verification, or is verified already."""
    if stored is None or stored.form_data.status != FormStatus.COMPLETE:
        raise VerificationRefused("Only a complete form can be verified.")
    version = stored.form_data.version
    if version != base_version:
        raise VerificationRefused(
            f"This form was saved after you opened it (now version {version}); reload it and "
            "verify what it holds now."
        )
    needed = form_requirement(session, study, subject, ref.form_oid)
    if needed is None:
        raise VerificationRefused("The study's SDV plan does not ask to verify this form.")
    verified = {row.item_oid for row in active_verifications(session, subject, ref)}
    wanted = (None,) if needed.items is None else item_oids(study, ref.form_oid, needed.items)
    new = [item for item in wanted if item not in verified]
    if not new:
        raise VerificationRefused("This form is verified already.")
    return [
        VerificationPlan(
            SourceVerification(
                study_id=subject.study_id, subject_id=pk(subject), event_oid=ref.event_oid,
                event_repeat=ref.event_repeat, form_oid=ref.form_oid,
                form_repeat=ref.form_repeat, item_oid=item, form_version=version,
                verified_by_name=by_name,
            )
        )
        for item in new
    ]  # fmt: skip


def plan_withdraw(
    session: Session, subject: Subject, ref: FormRef, reason: str | None, by_name: str
) -> list[VerificationPlan]:
    """End the form's verifications in force, with the monitor's reason (required)."""
    if not (reason and reason.strip()):
        raise VerificationRefused("Give a reason for withdrawing the verification.")
    rows = active_verifications(session, subject, ref)
    if not rows:
        raise VerificationRefused("Nothing of this form is verified.")
    end = VerificationEnd(by_name, reason=reason.strip())
    return [VerificationPlan(row, end) for row in rows]


def plan_drops(session: Session, plan: Plan, by_name: str) -> list[VerificationPlan]:
    """The verifications the plan's value changes break (the form saved and the forms it
    re-derives): a whole-form verification by any change to the form, an item's by a
    change to that item in any row."""
    changed = {form.ref: form for form in plan.forms if form.changes}
    if not changed or plan.subject is None:
        return []
    drops = []
    for row in active_verifications(session, plan.subject):
        ref = FormRef(row.event_oid, row.event_repeat, row.form_oid, row.form_repeat)
        form = changed.get(ref)
        if form is None:
            continue
        items = tuple(dict.fromkeys(change.item_oid for change in form.changes))
        if row.item_oid is not None:
            items = (row.item_oid,) if row.item_oid in items else ()
        if items:
            end = VerificationEnd(by_name, changed_items=items, changed_in_version=form.new_version)
            drops.append(VerificationPlan(row, end))
    return drops

"""The audit step of the write path: one audit record per change a plan makes (values, form
statuses, visit dates, subject status, new subjects, queries a person moves, freezes and
locks, source data verifications, signatures), in the order a reader replays them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app import audit
from app.audit import AuditAction
from app.crf.plans import FormPlan, Plan
from app.models import LockLevel, Subject, pk
from app.review.locks import LockPlan
from app.review.signatures import signature_audit_entries
from app.review.system_queries import query_audit_entries
from app.review.verification import VerificationPlan


def audit_entries(plan: Plan, actor: audit.Actor, now: datetime) -> list[dict[str, Any]]:
    """One audit record per change in the plan, in the order a reader replays them (a new
    form's status before its values, so that a transactional ODM export inserts the form
    before the values in it)."""
    subject = plan.subject
    assert subject is not None
    entries: list[dict[str, Any]] = []
    if plan.new_subject is not None:
        entries.append(
            audit.entry(
                actor=actor,
                action=AuditAction.SUBJECT_CREATE,
                path=audit.DataPath(subject),
                new_value=subject.subject_key,
                at=now,
            )
        )
    if plan.visit is not None:
        visit = plan.visit
        entries.append(
            audit.entry(
                actor=actor,
                action=AuditAction.VISIT_DATE,
                path=audit.DataPath(subject, visit.event_oid, visit.event_repeat),
                old_value=visit.old.isoformat() if visit.old else None,
                new_value=visit.new.isoformat(),
                reason=visit.reason,
                at=now,
            )
        )
    for form in plan.forms:
        entries += _form_entries(subject, form, actor, now)
    entries += query_audit_entries(subject, plan.queries, actor, now, system=False)
    entries += [_lock_entry(subject, lock_plan, actor, now) for lock_plan in plan.locks]
    entries += verification_audit_entries(subject, plan.verifications, actor, now)
    entries += signature_audit_entries(subject, plan.signatures, actor, now)
    if plan.status is not None:
        status = plan.status
        entries.append(
            audit.entry(
                actor=actor,
                action=AuditAction.SUBJECT_STATUS,
                path=audit.DataPath(subject),
                old_value=status.old,
                new_value=status.new,
                reason=status.reason,
                at=now,
                context=audit.StatusContext(
                    effective=status.effective, dose_level=status.dose_level, phase=status.phase
                ),
            )
        )
    return entries


def _lock_entry(
    subject: Subject | None, plan: LockPlan, actor: audit.Actor, now: datetime,
    study_id: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    lock = plan.lock
    released = plan.release_reason is not None
    action = (
        AuditAction.DATA_RELEASE if released
        else AuditAction.DATA_LOCK if lock.level == LockLevel.LOCK
        else AuditAction.DATA_FREEZE
    )  # fmt: skip
    path = (
        audit.DataPath(subject, lock.event_oid, lock.event_repeat, lock.form_oid, lock.form_repeat)
        if subject is not None else None
    )  # fmt: skip
    return audit.entry(
        actor=actor, action=action, path=path, study_id=study_id,
        old_value=lock.level if released else None, new_value=None if released else lock.level,
        reason=plan.release_reason if released else lock.reason, details=f"lock {pk(lock)}", at=now,
    )  # fmt: skip


def study_lock_entry(
    study_id: int, plan: LockPlan, actor: audit.Actor, now: datetime
) -> dict[str, Any]:
    """The audit record of the study's freeze, lock or release (no subject in its path)."""
    return _lock_entry(None, plan, actor, now, study_id=study_id)


def verification_audit_entries(
    subject: Subject, plans: list[VerificationPlan], actor: audit.Actor, now: datetime
) -> list[dict[str, Any]]:
    """A record per verification given, withdrawn (with the reason) or dropped (the items
    that changed, in `details` with the verification's id)."""
    entries = []
    for plan in plans:
        row, end = plan.row, plan.end
        action = (
            AuditAction.SDV_VERIFY if end is None
            else AuditAction.SDV_DROP if end.changed_items
            else AuditAction.SDV_WITHDRAW
        )  # fmt: skip
        details = f"verification {pk(row)}"
        if end is not None and end.changed_items:
            details += (
                f"; changed: {', '.join(end.changed_items)} (form version {end.changed_in_version})"
            )
        entries.append(
            audit.entry(
                actor=actor, action=action,
                path=audit.DataPath(subject, row.event_oid, row.event_repeat, row.form_oid, row.form_repeat, item_oid=row.item_oid),
                old_value=None if end is None else "verified",
                new_value="verified" if end is None else None,
                reason=end.reason if end else None, details=details, at=now,
            )
        )  # fmt: skip
    return entries


def _form_entries(
    subject: Subject, plan: FormPlan, actor: audit.Actor, now: datetime
) -> list[dict[str, Any]]:
    ref = plan.ref
    path = audit.DataPath(subject, ref.event_oid, ref.event_repeat, ref.form_oid, ref.form_repeat)
    form_entry = audit.entry(actor=actor, action=AuditAction.FORM_STATUS, path=path, at=now)
    entries = []
    if plan.status_changed:
        entries.append(
            {**form_entry, "old_value": plan.old_status, "new_value": plan.status,
             "reason": plan.status_reason}
        )  # fmt: skip
    for change in plan.changes:
        if change.old is None:
            action = AuditAction.ITEM_INSERT
        elif change.new is None:
            action = AuditAction.ITEM_REMOVE
        else:
            action = AuditAction.ITEM_UPDATE
        entries.append(
            audit.item_entry(
                form_entry, action=action, item_group_oid=change.group_oid,
                group_repeat=change.repeat, item_oid=change.item_oid, old_value=change.old,
                new_value=change.new, reason=change.reason,
            )
        )  # fmt: skip
    return entries

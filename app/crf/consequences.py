"""The write path's last step: what follows from a stored change, in its transaction, each
audited. Signatures of the changed data are broken, verifications of changed values dropped,
status alerts opened or closed, and system queries opened, re-opened, resolved or closed by
the edit checks the change fed."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from app import audit
from app.audit import AuditAction
from app.crf import persist
from app.crf.plan_audit import verification_audit_entries
from app.crf.plans import Plan
from app.models import pk
from app.review.signatures import plan_breaks, signature_audit_entries
from app.review.system_queries import plan_system_queries, query_audit_entries
from app.review.verification import plan_drops
from app.study.loader import Study


def react(session: Session, study: Study, plan: Plan, actor: audit.Actor, now: datetime) -> None:
    """React to what was stored: signatures of changed data broken, verifications of changed
    values dropped, status alerts opened or closed (decided with the plan, which holds the
    values before and after the change) and system queries opened, re-opened, resolved or
    closed by the edit checks the change fed, each audited."""
    subject = plan.subject
    assert subject is not None
    broken = plan_breaks(session, study, plan, actor.user, now)
    persist.write_signatures(session, broken, now=now)
    audit.record_all(session, signature_audit_entries(subject, broken, actor, now))
    user_id = actor.user.id if actor.user else None
    drops = plan_drops(session, plan, actor.printed_name)
    if drops:
        persist.write_verifications(session, drops, user_id=user_id, now=now)
        audit.record_all(session, verification_audit_entries(subject, drops, actor, now))
    if plan.check_results:
        queries = plan_system_queries(session, subject.study_id, pk(subject), plan.check_results)
        persist.write_queries(session, queries, now=now)
        audit.record_all(session, query_audit_entries(subject, queries, actor, now))
    if not plan.alerts:
        return
    persist.write_alerts(session, subject, plan.alerts, user_id=user_id, now=now)
    audit.record_all(
        session,
        [
            audit.entry(
                actor=actor,
                action=AuditAction.STATUS_ALERT_OPEN
                if alert.alert is None
                else AuditAction.STATUS_ALERT_CLOSE,
                path=audit.DataPath(subject),
                new_value=alert.requirement,
                reason=f"status {alert.status}",
                at=now,
            )
            for alert in plan.alerts
        ],
    )

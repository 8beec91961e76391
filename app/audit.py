"""The one home of the audit trail: every change to clinical data and every security event
is recorded here, in the caller's transaction (so a change and its audit record commit together).

What happened is one of `AuditAction`; what a reader needs to understand it (an effective
date, a dose level, a phase) is a typed `context`, validated and stored as JSON, never prose
to be parsed back. `details` is a human-readable note for events outside clinical data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import insert
from sqlmodel import Session

from app.models import AuditRecord, Subject, UserAccount, utcnow


class AuditAction(StrEnum):
    """Every kind of audit record. Item changes carry ODM's TransactionType names."""

    SUBJECT_CREATE = "subject_create"
    SUBJECT_STATUS = "subject_status"
    VISIT_DATE = "visit_date"
    FORM_STATUS = "form_status"
    ITEM_INSERT = "Insert"
    ITEM_UPDATE = "Update"
    ITEM_REMOVE = "Remove"
    STATUS_ALERT_OPEN = "status_alert_open"
    STATUS_ALERT_CLOSE = "status_alert_close"
    QUERY_OPEN = "query_open"
    QUERY_ANSWER = "query_answer"
    QUERY_RESOLVE = "query_resolve"
    QUERY_CLOSE = "query_close"
    QUERY_CANCEL = "query_cancel"
    QUERY_REOPEN = "query_reopen"
    DATA_FREEZE = "data_freeze"
    DATA_LOCK = "data_lock"
    DATA_RELEASE = "data_release"
    SDV_VERIFY = "sdv_verify"
    SDV_WITHDRAW = "sdv_withdraw"
    SDV_DROP = "sdv_drop"
    SIGN = "sign"
    SIGN_FAILED = "sign_failed"
    SIGNATURE_BROKEN = "signature_broken"
    STUDY_RELEASE = "study_release"
    STUDY_CHOSEN = "study_chosen"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    USER_CREATE = "user_create"
    USER_ACTIVATE = "user_activate"
    USER_DEACTIVATE = "user_deactivate"
    ROLE_GRANT = "role_grant"
    ROLE_REVOKE = "role_revoke"
    SITE_CREATE = "site_create"
    API_TOKEN_CREATE = "api_token_create"  # noqa: S105 - an action name
    API_TOKEN_REVOKE = "api_token_revoke"  # noqa: S105 - an action name
    EXPORT_REQUESTED = "export_requested"
    EXPORT = "export"
    EXPORT_FAILED = "export_failed"
    EXPORT_DOWNLOAD = "export_download"
    IMPORT_REQUESTED = "import_requested"
    IMPORT = "import"
    IMPORT_FAILED = "import_failed"
    CHECK_RUN = "check_run"
    BOARD_DECISION = "board_decision"


ITEM_ACTIONS = (AuditAction.ITEM_INSERT, AuditAction.ITEM_UPDATE, AuditAction.ITEM_REMOVE)


class StatusContext(BaseModel):
    """What a subject status change needs besides old and new status: the date it took
    effect and, when assigned, the dose level and phase (codes of their lists)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective: date | None
    dose_level: str | None = None
    phase: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through what channel (web, api, cli, import:<file>)."""

    user: UserAccount | None
    source: str = "web"

    @property
    def username(self) -> str:
        return self.user.username if self.user else "system"

    @property
    def printed_name(self) -> str:
        """The name that reviews, locks and signatures record (the username without one)."""
        return self.user.full_name if self.user else self.username


@dataclass(frozen=True)
class DataPath:
    """Where in a subject's ClinicalData a value lives."""

    subject: Subject
    event_oid: str | None = None
    event_repeat: int | None = None
    form_oid: str | None = None
    form_repeat: int | None = None
    item_group_oid: str | None = None
    group_repeat: int | None = None
    item_oid: str | None = None


def entry(
    *,
    actor: Actor,
    action: AuditAction,
    path: DataPath | None = None,
    old_value: str | None = None,
    new_value: str | None = None,
    reason: str | None = None,
    details: str | None = None,
    context: StatusContext | None = None,
    study_id: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The column values of one audit record; the study is the subject's when `path` is
    given, else `study_id` (None for events of the whole instance)."""
    subject = path.subject if path else None
    return {
        "study_id": subject.study_id if subject else study_id,
        "occurred_at": at or utcnow(),
        "user_id": actor.user.id if actor.user else None,
        "username": actor.username,
        "action": action,
        "source": actor.source,
        "site_id": subject.site_id if subject else None,
        "subject_id": subject.id if subject else None,
        "subject_key": subject.subject_key if subject else None,
        "event_oid": path.event_oid if path else None,
        "event_repeat": path.event_repeat if path else None,
        "form_oid": path.form_oid if path else None,
        "form_repeat": path.form_repeat if path else None,
        "item_group_oid": path.item_group_oid if path else None,
        "group_repeat": path.group_repeat if path else None,
        "item_oid": path.item_oid if path else None,
        "old_value": old_value,
        "new_value": new_value,
        "reason": reason,
        "details": details,
        "context": None if context is None else context.model_dump(mode="json"),
    }


def item_entry(
    form_entry: dict[str, Any],
    *,
    action: AuditAction,
    item_group_oid: str,
    group_repeat: int,
    item_oid: str,
    old_value: str | None,
    new_value: str | None,
    reason: str | None,
) -> dict[str, Any]:
    """The record of one item's change, from the `entry` of its form: a save changes dozens
    of items, and copying the form's record is far cheaper than building each anew."""
    return {
        **form_entry, "action": action, "item_group_oid": item_group_oid,
        "group_repeat": group_repeat, "item_oid": item_oid, "old_value": old_value,
        "new_value": new_value, "reason": reason,
    }  # fmt: skip


def record(session: Session, **fields: Any) -> None:
    """Write one audit record in the session's transaction (the caller commits).
    Takes the keyword arguments of `entry`."""
    record_all(session, [entry(**fields)])


_INSERT = insert(AuditRecord.__table__)  # type: ignore[attr-defined]


def record_all(session: Session, entries: list[dict[str, Any]]) -> None:
    """Write many audit records in one statement (a form save changes dozens of values)."""
    if entries:
        session.execute(_INSERT, entries)

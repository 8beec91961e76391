"""What a user can ask to change in a casebook, and how a change is refused.

Each change is a frozen dataclass handed to `app.crf.write.apply`, the one entry point
through which every change to clinical data passes (pages, API, import, demo, command line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from app.crf.engine import FieldKey, RawRows

MAX_REASON_LENGTH = 500
"""Longest reason for change, not-done reason or status reason, on every channel."""


@dataclass(frozen=True)
class FormRef:
    """Where a form lives in a subject's casebook (ODM StudyEvent and Form OIDs and repeats)."""

    event_oid: str
    event_repeat: int
    form_oid: str
    form_repeat: int


@dataclass(frozen=True)
class FormEdit:
    """What a user submits for a form: values, the version they opened, their reasons.

    `rows` may name only part of the form: a group row it does not name keeps its stored
    values; rows in `removed` are deleted (their values cleared, audited)."""

    rows: RawRows
    base_version: int
    complete: bool = False
    reason: str | None = None
    """Reason for every changed value that has none of its own."""
    reasons: Mapping[FieldKey, str] = field(default_factory=dict)
    removed: frozenset[tuple[str, int]] = frozenset()
    """(item group OID, repeat key) of rows the user removed."""


@dataclass(frozen=True)
class NewSubject:
    """Register a subject at a site: the next screening number, or `subject_key` as another
    system gave it (an ODM import keeps the source's SubjectKey)."""

    site_id: int
    subject_key: str | None = None


@dataclass(frozen=True)
class FormValues:
    """Save values of a form (in progress, or complete when `edit.complete`)."""

    subject_id: int
    ref: FormRef
    edit: FormEdit


@dataclass(frozen=True)
class FormNotDone:
    """Record that a form was not done, with the reason."""

    subject_id: int
    ref: FormRef
    base_version: int
    reason: str | None


@dataclass(frozen=True)
class VisitDate:
    """Record or correct the date a visit took place (dating the next repeat of a repeating
    visit adds it)."""

    subject_id: int
    event_oid: str
    event_repeat: int
    visit_date: date
    reason: str | None = None


@dataclass(frozen=True)
class SubjectStatus:
    """Move a subject along a transition of the study's path; enrolment assigns the dose
    level and phase."""

    subject_id: int
    to: str
    effective: date
    reason: str | None = None
    dose_level: str | None = None
    phase: str | None = None


@dataclass(frozen=True)
class ImportedStatus:
    """Set a subject's status, dose level and phase as another system recorded them (an ODM
    import): the source was the system of record when the subject moved, so the path's
    transitions, which check today's date and the order of steps, do not apply."""

    subject_id: int
    status: str
    effective: date | None
    dose_level: str | None
    phase: str | None


@dataclass(frozen=True)
class QueryTarget:
    """What a manual query is about: an item (all of it given), a form (no group or item) or
    a visit (no form)."""

    event_oid: str
    event_repeat: int = 1
    form_oid: str | None = None
    form_repeat: int | None = None
    item_group_oid: str | None = None
    group_repeat: int | None = None
    item_oid: str | None = None


@dataclass(frozen=True)
class QueryOpen:
    """A data manager or monitor asks the site a question about a subject's data."""

    subject_id: int
    target: QueryTarget
    text: str


class QueryAction(StrEnum):
    ANSWER = "answer"
    """The site answers (open -> answered)."""
    CLOSE = "close"
    CANCEL = "cancel"
    REOPEN = "reopen"


@dataclass(frozen=True)
class QueryChange:
    """Move a query on: the site answers it; a data manager or monitor closes, cancels or
    re-opens it. `base_version` is the query's version the user saw."""

    subject_id: int
    query_id: int
    base_version: int
    action: QueryAction
    text: str | None = None


@dataclass(frozen=True)
class ImportedTransition:
    """One state change of a query as another system (or a TrialDesk export) recorded it:
    from which state to which, with its text, by whom and when there."""

    old: str | None
    new: str
    text: str | None
    by: str | None
    at: datetime | None


@dataclass(frozen=True)
class ImportedQuery:
    """A query as an ODM file carries it (an import): its place, texts and state, and its
    history as far as the file holds it (the snapshot: none; the transactional export: every
    transition). A system query (`check_id`) is matched on its check and place, a manual one
    on its place, question and opening time, so importing it again changes nothing."""

    subject_id: int
    target: QueryTarget
    state: str
    text: str
    response: str | None
    check_id: str | None
    opened_at: datetime | None
    opened_by: str | None
    require_response: bool = False
    require_manual_close: bool = False
    history: tuple[ImportedTransition, ...] = ()


@dataclass(frozen=True)
class DataLockSet:
    """A data manager freezes ("freeze") or locks ("lock") a subject's casebook, one visit
    (`event_oid`) or one form (`form_oid` too). An import keeps who set it and when in the
    source (`set_by_name`, `set_at`; ignored on every other channel)."""

    subject_id: int
    level: str
    reason: str | None = None
    event_oid: str | None = None
    event_repeat: int | None = None
    form_oid: str | None = None
    form_repeat: int | None = None
    set_by_name: str | None = None
    set_at: datetime | None = None


@dataclass(frozen=True)
class DataLockRelease:
    """A data manager releases a freeze or lock, with the reason."""

    subject_id: int
    lock_id: int
    reason: str | None


@dataclass(frozen=True)
class StudyLockSet:
    """A data manager freezes or locks the whole study (the database lock). A lock while
    queries are open needs `confirm_open_queries` and a reason."""

    level: str
    reason: str | None = None
    confirm_open_queries: bool = False


@dataclass(frozen=True)
class StudyLockRelease:
    """A data manager releases the study's freeze or lock, with the reason."""

    lock_id: int
    reason: str | None


@dataclass(frozen=True)
class VerifyForm:
    """A monitor verifies a complete form against the source: what the study's SDV plan asks
    of it (the whole form, or each listed item not verified yet). `base_version` is the form
    data version the monitor saw: a form saved since is refused."""

    subject_id: int
    ref: FormRef
    base_version: int


@dataclass(frozen=True)
class WithdrawVerification:
    """A monitor withdraws the form's verifications (given by mistake), with the reason."""

    subject_id: int
    ref: FormRef
    reason: str | None


@dataclass(frozen=True)
class Sign:
    """The investigator signs a form (`ref`) or the subject's casebook (`ref` None), giving
    the password again, and the username too (both components) unless the login session
    `login_session_id` (LoginSession.id) has signed before (21 CFR 11.200(a)(1))."""

    subject_id: int
    ref: FormRef | None
    password: str = field(repr=False)
    username: str | None = None
    login_session_id: str | None = None


SubjectChange = (
    NewSubject | FormValues | FormNotDone | VisitDate | SubjectStatus | ImportedStatus
    | QueryOpen | QueryChange | ImportedQuery | DataLockSet | DataLockRelease | VerifyForm
    | WithdrawVerification | Sign
)  # fmt: skip
"""Changes to one subject's casebook (a new subject included)."""

StudyChange = StudyLockSet | StudyLockRelease
"""Changes to the whole study."""

Change = SubjectChange | StudyChange


class NotFound(Exception):
    """Absent, or not visible to this user: both get the same answer."""


class Refused(Exception):
    """A change that cannot be made as asked; the message says why, to the user."""


class FormRefused(Refused):
    """A form or visit action refused (no reason given, values present, a future date)."""


class StatusRefused(Refused):
    """A status change that cannot be made now."""


class SubjectKeyTaken(Refused):
    """A subject with this SubjectKey already exists in the study."""


def check_reasons(*reasons: str | None) -> None:
    """Refuse a reason longer than MAX_REASON_LENGTH, whichever channel it came through."""
    for reason in reasons:
        if reason is not None and len(reason) > MAX_REASON_LENGTH:
            raise FormRefused(
                f"A reason is at most {MAX_REASON_LENGTH} characters; this one has "
                f"{len(reason)}. Shorten it and try again."
            )


@dataclass
class SaveConflict(Exception):
    """The form changed since the user opened it; `changes` lists (label, saved, submitted)."""

    current_version: int
    changes: list[tuple[str, str | None, str | None]]

    def __str__(self) -> str:
        return (
            "Someone else saved this form after you opened it (now version "
            f"{self.current_version}). Nothing of yours was saved; review their changes and "
            "enter yours again."
        )

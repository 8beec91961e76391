"""Database tables. Clinical data follows ODM's ClinicalData levels:
subject -> study_event (visit) -> form_data -> item_group_data (repeat) -> item_data.

Item values are stored as their canonical text (ISO 8601 dates, codes, plain decimals), the
same text that ODM carries, so storing and exporting never reformat a value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Dialect,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel


def pk(row: Any) -> int:
    """The primary key of a stored (flushed) row; SQLModel types ids optional until then."""
    assert row.id is not None, f"{type(row).__name__} has not been flushed"
    return int(row.id)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp_field(**kwargs: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kwargs)


class Role(StrEnum):
    INVESTIGATOR = "investigator"
    COORDINATOR = "coordinator"
    MONITOR = "monitor"
    DATA_MANAGER = "data_manager"
    SPONSOR = "sponsor"
    ADMIN = "admin"


class FormStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    NOT_DONE = "not_done"


class StudyRecord(SQLModel, table=True):
    """A study this instance runs (its definition is loaded from a folder of `forms/` files);
    sites, subjects, role assignments and export jobs belong to one study."""

    __tablename__ = "study"

    id: int | None = Field(default=None, primary_key=True)
    oid: str = Field(unique=True, max_length=40, description="the study's OID, e.g. ZM001")
    name: str = Field(max_length=200)
    created_at: datetime = timestamp_field(default_factory=utcnow)


class StudyVersion(SQLModel, table=True):
    """A released version of a study's definition: its ODM MetaDataVersion OID (MDV.ZM001.1),
    the digest of its content, and the definition itself, so that a form keeps the version it
    was entered under and values of items a later version removed are still shown."""

    __tablename__ = "study_version"
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    number: int = Field(description="1, 2, ...: the MetaDataVersion is MDV.<study OID>.<number>")
    oid: str = Field(unique=True, max_length=60)
    digest: str = Field(max_length=64, description="SHA-256 of the definition's content")
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    released_at: datetime = timestamp_field(default_factory=utcnow)
    released_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class Site(SQLModel, table=True):
    __tablename__ = "site"
    __table_args__ = (
        UniqueConstraint("study_id", "number", name="uq_site_study_number"),
        UniqueConstraint("study_id", "oid", name="uq_site_study_oid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    oid: str = Field(max_length=40)
    number: str = Field(max_length=4, description="prefix of screening numbers")
    name: str = Field(max_length=200)
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA time zone: the site's local date decides what is today, future, due",
    )
    next_subject_number: int = Field(default=1, description="counter for screening numbers")
    created_at: datetime = timestamp_field(default_factory=utcnow)


class UserAccount(SQLModel, table=True):
    """An account. `full_name` is the name as the person writes it (shown, printed under a
    signature); `given_name` and `family_name` are its parts for exports that need them
    (ODM FirstName and LastName), since the order of the parts differs between cultures."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=80)
    full_name: str = Field(max_length=200)
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    password_hash: str = Field(max_length=200)
    is_active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = timestamp_field(default=None, nullable=True)
    created_at: datetime = timestamp_field(default_factory=utcnow)


class RoleAssignment(SQLModel, table=True):
    """A role held by a user in a study, at one of its sites or (site_id None) study-wide;
    the administrator's role belongs to no study (study_id None: the whole instance)."""

    __tablename__ = "role_assignment"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "study_id", "site_id", name="uq_role_assignment"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    role: str = Field(max_length=30)
    study_id: int | None = Field(default=None, foreign_key="study.id")
    site_id: int | None = Field(default=None, foreign_key="site.id")


class LoginSession(SQLModel, table=True):
    """A browser login, kept in the database so that any server process can serve it."""

    __tablename__ = "login_session"

    id: str = Field(primary_key=True, max_length=64, description="SHA-256 of the cookie token")
    user_id: int = Field(foreign_key="user_account.id", index=True)
    study_id: int | None = Field(
        default=None, foreign_key="study.id", description="the study the user works in now"
    )
    created_at: datetime = timestamp_field(default_factory=utcnow)
    last_seen_at: datetime = timestamp_field(default_factory=utcnow)
    ended_at: datetime | None = timestamp_field(default=None, nullable=True)
    signed_at: datetime | None = timestamp_field(
        default=None, nullable=True,
        description="the session's first electronic signature: later ones ask only the password",
    )  # fmt: skip


class ApiToken(SQLModel, table=True):
    """A personal API token; only its SHA-256 is stored, the secret is shown once."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=80)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    last_used_at: datetime | None = timestamp_field(default=None, nullable=True)
    revoked_at: datetime | None = timestamp_field(default=None, nullable=True)


class Subject(SQLModel, table=True):
    __tablename__ = "subject"
    __table_args__ = (UniqueConstraint("study_id", "subject_key", name="uq_subject_study_key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_id: int = Field(foreign_key="site.id", index=True)
    subject_key: str = Field(max_length=40, description="screening number, unique in its study")
    status: str = Field(max_length=30, description="a status code of the study's subject path")
    status_date: date | None = Field(default=None, description="effective date of the status")
    dose_level: str | None = Field(default=None, max_length=10)
    phase: str | None = Field(default=None, max_length=20)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    created_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class StudyEventData(SQLModel, table=True):
    """A visit of a subject (ODM StudyEventData); log forms live in the event SE.LOG."""

    __tablename__ = "study_event_data"
    __table_args__ = (UniqueConstraint("subject_id", "event_oid", "repeat_key"),)

    id: int | None = Field(default=None, primary_key=True)
    subject_id: int = Field(foreign_key="subject.id", index=True)
    event_oid: str = Field(max_length=60)
    repeat_key: int = 1
    visit_date: date | None = Field(default=None, description="date the visit took place")
    created_at: datetime = timestamp_field(default_factory=utcnow)


class FormData(SQLModel, table=True):
    """A saved form (ODM FormData). `version` is the optimistic lock: every save bumps it."""

    __tablename__ = "form_data"
    __table_args__ = (UniqueConstraint("study_event_id", "form_oid", "repeat_key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_event_id: int = Field(foreign_key="study_event_data.id", index=True)
    form_oid: str = Field(max_length=60)
    repeat_key: int = 1
    status: str = Field(default=FormStatus.IN_PROGRESS, max_length=20)
    not_done_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    definition_version: str = Field(
        max_length=60, description="MetaDataVersion OID of the definition it was entered under"
    )
    version: int = Field(default=1, description="optimistic lock counter")
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    updated_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class ItemGroupData(SQLModel, table=True):
    __tablename__ = "item_group_data"
    __table_args__ = (UniqueConstraint("form_data_id", "item_group_oid", "repeat_key"),)

    id: int | None = Field(default=None, primary_key=True)
    form_data_id: int = Field(foreign_key="form_data.id", index=True)
    item_group_oid: str = Field(max_length=60)
    repeat_key: int = 1


class ItemData(SQLModel, table=True):
    __tablename__ = "item_data"
    __table_args__ = (UniqueConstraint("item_group_data_id", "item_oid"),)

    id: int | None = Field(default=None, primary_key=True)
    item_group_data_id: int = Field(foreign_key="item_group_data.id", index=True)
    item_oid: str = Field(max_length=60)
    value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class StatusAlert(SQLModel, table=True):
    """A requirement of a status the subject has reached that the casebook no longer meets
    (eligibility corrected to "not eligible" after enrolment): open, for the investigator,
    until the data meet it again."""

    __tablename__ = "status_alert"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: int = Field(foreign_key="subject.id", index=True)
    status: str = Field(max_length=30, description="the status the requirement belongs to")
    requirement: str = Field(max_length=500, description="the requirement's message")
    opened_at: datetime = timestamp_field(default_factory=utcnow)
    opened_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    closed_at: datetime | None = timestamp_field(default=None, nullable=True)
    closed_by_id: int | None = Field(default=None, foreign_key="user_account.id")


class QueryState(StrEnum):
    """CDISC ODM 2.0 QueryStateType."""

    OPEN = "open"
    ANSWERED = "answered"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Query(SQLModel, table=True):
    """A question about a subject's data: opened by a failing soft edit check (`check_id`) or
    by a data manager or monitor, answered by the site, closed or cancelled by a data manager
    or monitor. It points at an item, a form or a visit (the path columns, as audit records
    name them); its history is its audit records (`details` = "query <id>")."""

    __tablename__ = "query"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    subject_id: int = Field(foreign_key="subject.id", index=True)
    event_oid: str = Field(max_length=60)
    event_repeat: int = 1
    form_oid: str | None = Field(default=None, max_length=60)
    form_repeat: int | None = None
    item_group_oid: str | None = Field(default=None, max_length=60)
    group_repeat: int | None = None
    item_oid: str | None = Field(default=None, max_length=60)
    check_id: str | None = Field(default=None, max_length=40, description="a system query's check")
    check_key: str | None = Field(
        default=None, max_length=400, unique=True,
        description="check and path of a system query: a check failing again re-opens it",
    )  # fmt: skip
    state: str = Field(max_length=20, index=True, description="QueryState")
    text: str = Field(sa_column=Column(Text, nullable=False), description="the question")
    response: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True), description="the site's last answer"
    )
    require_response: bool = False
    require_manual_close: bool = False
    opened_at: datetime = timestamp_field(default_factory=utcnow)
    opened_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    version: int = Field(default=1, description="optimistic lock, as a form's")


class LockLevel(StrEnum):
    FREEZE = "freeze"
    """No data changes; queries and source data verification go on."""
    LOCK = "lock"
    """Nothing changes."""


class DataLock(SQLModel, table=True):
    """A freeze or lock set by a data manager on a form, a visit, a subject or the whole study
    (the path columns say which: no subject is the study); active until released, with a
    reason, by a data manager."""

    __tablename__ = "data_lock"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    subject_id: int | None = Field(default=None, foreign_key="subject.id", index=True)
    event_oid: str | None = Field(default=None, max_length=60)
    event_repeat: int | None = None
    form_oid: str | None = Field(default=None, max_length=60)
    form_repeat: int | None = None
    level: str = Field(max_length=10, description="LockLevel")
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    set_at: datetime = timestamp_field(default_factory=utcnow)
    set_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    set_by_name: str = Field(max_length=200, description="the printed name of who set it")
    released_at: datetime | None = timestamp_field(default=None, nullable=True)
    released_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    release_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SourceVerification(SQLModel, table=True):
    """A monitor's verification of a form instance against the source (SDV): the whole form
    (`item_oid` None) or one item of it (per-item SDV, every row of the item's group), at the
    form data version the monitor saw. It ends when a change to a verified value drops it
    (`changed_items` names what changed, `changed_in_version` the form version that changed
    it) or when a monitor withdraws it (`end_reason`); a new verification is a new row."""

    __tablename__ = "source_verification"
    __table_args__ = (Index("ix_source_verification_form", "subject_id", "event_oid", "form_oid"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    subject_id: int = Field(foreign_key="subject.id")
    event_oid: str = Field(max_length=60)
    event_repeat: int = 1
    form_oid: str = Field(max_length=60)
    form_repeat: int = 1
    item_oid: str | None = Field(default=None, max_length=60, description="per-item SDV")
    form_version: int = Field(description="the form data version verified")
    verified_at: datetime = timestamp_field(default_factory=utcnow)
    verified_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    verified_by_name: str = Field(max_length=200, description="the monitor's printed name")
    ended_at: datetime | None = timestamp_field(default=None, nullable=True)
    ended_by_id: int | None = Field(default=None, foreign_key="user_account.id")
    ended_by_name: str | None = Field(default=None, max_length=200)
    end_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    changed_items: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True),
        description="the items whose change dropped it (FORM.ITEM, comma-separated)",
    )  # fmt: skip
    changed_in_version: int | None = Field(
        default=None, description="the form data version whose change dropped it"
    )


class Signature(SQLModel, table=True):
    """An investigator's electronic signature (21 CFR Part 11) of a form (the path columns)
    or of a subject's whole casebook (no event): who (id and printed name), when (UTC), what it
    means, and the SHA-256 of the signed values (`app.review.signed_content`).
    A change to the signed data breaks it (`broken_*`, which change, by whom, when); it stays
    as history, and the investigator signs again with a new row."""

    __tablename__ = "signature"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    subject_id: int = Field(foreign_key="subject.id", index=True)
    event_oid: str | None = Field(default=None, max_length=60)
    event_repeat: int | None = None
    form_oid: str | None = Field(default=None, max_length=60)
    form_repeat: int | None = None
    signer_id: int = Field(foreign_key="user_account.id")
    signer_name: str = Field(max_length=200, description="the signer's printed name")
    meaning: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: datetime = timestamp_field(default_factory=utcnow)
    content_hash: str = Field(max_length=64, description="SHA-256 of the signed values")
    broken_at: datetime | None = timestamp_field(default=None, nullable=True)
    broken_by_name: str | None = Field(default=None, max_length=200)
    broken_by_change: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True), description="what changed"
    )


class AuditRecord(SQLModel, table=True):
    """Append-only audit trail (database triggers refuse UPDATE and DELETE).

    One row per change: who (user id and name as they were), when (UTC), where in the
    ClinicalData (subject, event, form, group repeat, item), old and new value, and why.
    Non-data events (logins, permission changes) use `action` and leave the data path empty.
    """

    __tablename__ = "audit_record"
    __table_args__ = (Index("ix_audit_record_subject_item", "subject_id", "item_oid"),)

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = timestamp_field(default_factory=utcnow, index=True)
    user_id: int | None = Field(default=None, foreign_key="user_account.id")
    username: str = Field(max_length=80)
    action: str = Field(max_length=40)
    study_id: int | None = Field(default=None, foreign_key="study.id", index=True)
    source: str = Field(default="web", max_length=200)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    subject_id: int | None = Field(default=None, foreign_key="subject.id")
    subject_key: str | None = Field(default=None, max_length=40)
    event_oid: str | None = Field(default=None, max_length=60)
    event_repeat: int | None = None
    form_oid: str | None = Field(default=None, max_length=60)
    form_repeat: int | None = None
    item_group_oid: str | None = Field(default=None, max_length=60)
    group_repeat: int | None = None
    item_oid: str | None = Field(default=None, max_length=60)
    old_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    new_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    details: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    context: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="typed context of the action (app.audit), e.g. a status change's dates",
    )


class JobState(StrEnum):
    """The states of a background job (export or import)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


ExportState = JobState
"""The name export jobs have always used for `JobState`."""


class ExportJob(SQLModel, table=True):
    """An export asked for on the page, the API or the command line, and its progress.

    Kept here, not in a server's memory, so that any server process can report on it and hand
    out its result, and so that a job whose process died is seen (its heartbeat stops) and
    marked failed. The result itself is stored in `export_chunk` rows.
    """

    __tablename__ = "export_job"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    kind: str = Field(max_length=30, description="odm_snapshot, odm_transactional, sdtm, define")
    formats: str = Field(default="", max_length=40, description="comma-separated, for SDTM")
    scope_kind: str = Field(max_length=20)
    site_id: int | None = Field(default=None, foreign_key="site.id")
    dose_level: str | None = Field(default=None, max_length=10)
    phase: str | None = Field(default=None, max_length=20)
    subject_id: int | None = Field(default=None, foreign_key="subject.id")
    changed_since: datetime | None = timestamp_field(default=None, nullable=True)
    scope_text: str = Field(max_length=200, description="the scope as users read it")
    state: str = Field(default=ExportState.QUEUED, max_length=20, index=True)
    progress_done: int = 0
    progress_total: int = 0
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    requested_by_id: int = Field(foreign_key="user_account.id", index=True)
    requested_at: datetime = timestamp_field(default_factory=utcnow)
    started_at: datetime | None = timestamp_field(default=None, nullable=True)
    finished_at: datetime | None = timestamp_field(default=None, nullable=True)
    heartbeat_at: datetime | None = timestamp_field(default=None, nullable=True)
    worker: str | None = Field(default=None, max_length=100, description="host:pid running it")
    file_name: str | None = Field(default=None, max_length=200)
    file_size: int | None = Field(default=None, sa_type=BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    manifest: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="JSON list of the files in the result: name, rows, bytes, sha256",
    )


class ExportChunk(SQLModel, table=True):
    """A piece of an export job's result file, stored in order, so that any server process can
    stream the download."""

    __tablename__ = "export_chunk"

    job_id: int = Field(foreign_key="export_job.id", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ImportJob(SQLModel, table=True):
    """An ODM import asked for on the import page or the command line, and its progress.

    Like `ExportJob`, kept in the database so that any server process can report on it: the
    uploaded file is stored in `import_chunk` rows, the result is the import report as JSON
    (`app.importers.odm_import.ImportReport`).
    """

    __tablename__ = "import_job"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    file_name: str = Field(max_length=200, description="the uploaded file's safe name")
    file_size: int = Field(default=0, sa_type=BigInteger)
    valid_subjects_only: bool = False
    state: str = Field(default=JobState.QUEUED, max_length=20, index=True)
    phase: str = Field(default="", max_length=20, description="checking or storing")
    progress_done: int = 0
    progress_total: int = 0
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    report: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True), description="ImportReport as JSON"
    )
    requested_by_id: int = Field(foreign_key="user_account.id", index=True)
    requested_at: datetime = timestamp_field(default_factory=utcnow)
    started_at: datetime | None = timestamp_field(default=None, nullable=True)
    finished_at: datetime | None = timestamp_field(default=None, nullable=True)
    heartbeat_at: datetime | None = timestamp_field(default=None, nullable=True)
    worker: str | None = Field(default=None, max_length=100, description="host:pid running it")


class CheckRunJob(SQLModel, table=True):
    """A batch run of the edit checks asked for on the checks page, and its progress (kept in
    the database, like `ImportJob`, so that any server process can report on it). The result
    is the run's summary as JSON (`app.checks.batch.BatchReport.summary`)."""

    __tablename__ = "check_run_job"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    site_number: str | None = Field(default=None, max_length=20)
    subject_key: str | None = Field(default=None, max_length=40)
    dry_run: bool = False
    state: str = Field(default=JobState.QUEUED, max_length=20, index=True)
    progress_done: int = 0
    progress_total: int = 0
    message: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    report: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    requested_by_id: int = Field(foreign_key="user_account.id", index=True)
    requested_at: datetime = timestamp_field(default_factory=utcnow)
    started_at: datetime | None = timestamp_field(default=None, nullable=True)
    finished_at: datetime | None = timestamp_field(default=None, nullable=True)
    heartbeat_at: datetime | None = timestamp_field(default=None, nullable=True)
    worker: str | None = Field(default=None, max_length=100, description="host:pid running it")


class ImportChunk(SQLModel, table=True):
    """A piece of an import job's uploaded file, stored in order, so that any server process
    can run the job."""

    __tablename__ = "import_chunk"

    job_id: int = Field(foreign_key="import_job.id", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))

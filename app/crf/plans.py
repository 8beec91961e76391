"""What a change will write, worked out before anything is written.

The evaluate step of `app.crf.write` turns a change into a `Plan`; `app.crf.persist` writes
it and `app.crf.write` audits it. A plan holds every row the change touches: the form the
user saved and the forms of the subject re-derived from it, a visit date, a status, a new
subject, status alerts opened or closed, freezes, locks, queries, verifications and signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from app.checks.evaluate import CheckResult
from app.crf.changes import FormRef
from app.crf.engine import FormEvaluation
from app.crf.reads import StoredForm
from app.models import StatusAlert, StudyEventData, Subject
from app.review.locks import LockPlan
from app.review.signatures import SignaturePlan
from app.review.system_queries import QueryPlan
from app.review.verification import VerificationPlan
from app.study.model import FormDef


@dataclass(frozen=True)
class ItemChange:
    """One value that changes: (group, repeat, item), before and after, and why."""

    group_oid: str
    repeat: int
    item_oid: str
    old: str | None
    new: str | None
    reason: str | None


@dataclass
class FormPlan:
    """A form to create or update: its row (status, optimistic lock) and its changed values."""

    ref: FormRef
    form: FormDef
    definition_version: str
    """The MetaDataVersion OID the form is stored under from now on (the running one)."""
    stored: StoredForm | None
    base_version: int
    old_status: str
    status: str
    changes: list[ItemChange]
    not_done_reason: str | None = None
    status_reason: str | None = None
    """Recorded with a status change (the user's reason, or why it was not done)."""

    @property
    def status_changed(self) -> bool:
        return self.status != self.old_status

    @property
    def new_version(self) -> int:
        return self.base_version + 1


@dataclass(frozen=True)
class VisitPlan:
    event_oid: str
    event_repeat: int
    event: StudyEventData | None
    old: date | None
    new: date
    reason: str | None


@dataclass(frozen=True)
class StatusPlan:
    old: str
    new: str
    effective: date | None
    dose_level: str | None
    phase: str | None
    reason: str | None


@dataclass(frozen=True)
class SubjectPlan:
    """A subject to add at a site: the next screening number when `subject_key` is None."""

    study_id: int
    site_id: int
    subject_key: str | None
    status: str


@dataclass(frozen=True)
class AlertPlan:
    """A status alert to open (`alert` None) or to close."""

    status: str
    requirement: str
    alert: StatusAlert | None = None


@dataclass
class Plan:
    """Everything one change writes. `subject` is None until a new subject is stored."""

    subject: Subject | None
    new_subject: SubjectPlan | None = None
    forms: list[FormPlan] = field(default_factory=list)
    visit: VisitPlan | None = None
    status: StatusPlan | None = None
    alerts: list[AlertPlan] = field(default_factory=list)
    evaluation: FormEvaluation | None = None
    """The evaluation of the form the user saved; its errors refuse the change."""
    locks: list[LockPlan] = field(default_factory=list)
    """Freezes and locks set or released."""
    queries: list[QueryPlan] = field(default_factory=list)
    """Queries a person opens or moves on (system queries are the consequences step's)."""
    verifications: list[VerificationPlan] = field(default_factory=list)
    """Source data verifications a monitor gives or withdraws (those a change drops are
    the consequences step's)."""
    signatures: list[SignaturePlan] = field(default_factory=list)
    """Signatures made (those a change breaks are the consequences step's)."""
    check_results: list[CheckResult] = field(default_factory=list)
    """The edit checks the change's forms feed, run on the casebook as it will be; the
    consequences step turns them into system queries."""

    @property
    def refused(self) -> bool:
        return self.evaluation is not None and not self.evaluation.is_valid

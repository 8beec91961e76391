"""What an export covers: the whole study, one site, one dose cohort or one subject, and
optionally only what changed since a moment (incremental). Every exporter takes an
`ExportScope` and reads subjects through `scoped_subjects`, so the scopes mean the same thing
in ODM, SDTM and Define-XML, from the page, the API and the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select

from app.models import Site, Subject

Progress = Callable[[int, int], None]
"""Called by exporters as work advances: (subjects done, subjects in scope), or of another
unit where a phase says so."""

Phases = Callable[[str], Progress]
"""The progress callback of each named phase of an export (SUBJECTS, DATASETS, DEFINE_XML);
a phase begins when its callback is first called, and ends when the next one begins or the
export returns."""

SUBJECTS = "subjects"
DATASETS = "datasets"
DEFINE_XML = "Define-XML"


def no_progress(done: int, total: int) -> None:
    """The progress callback of callers that do not show progress."""


def no_phases(name: str) -> Progress:
    """The phases of callers that do not show progress."""
    return no_progress


def subjects_only(progress: Progress) -> Phases:
    """Phases telling `progress` how the subjects advance, and nothing of the other phases."""
    return lambda name: progress if name == SUBJECTS else no_progress


class ScopeKind(StrEnum):
    STUDY = "study"
    SITE = "site"
    COHORT = "cohort"
    SUBJECT = "subject"


@dataclass(frozen=True)
class ExportScope:
    """Which subjects of the study `study_id` an export reads. `site_id`, `dose_level` (with
    an optional `phase`) or `subject_id` is set for the kinds SITE, COHORT and SUBJECT. `changed_since` (UTC) keeps
    only data changed after that moment; exporters that cannot be partial ignore it."""

    study_id: int = field(kw_only=True)
    kind: ScopeKind = ScopeKind.STUDY
    site_id: int | None = None
    dose_level: str | None = None
    phase: str | None = None
    subject_id: int | None = None
    changed_since: datetime | None = None

    def __post_init__(self) -> None:
        required = {
            ScopeKind.SITE: self.site_id,
            ScopeKind.COHORT: self.dose_level,
            ScopeKind.SUBJECT: self.subject_id,
        }
        if self.kind in required and required[self.kind] is None:
            raise ValueError(f"a {self.kind.value} export needs the {self.kind.value} it covers")
        if self.changed_since is not None and self.changed_since.tzinfo is None:
            raise ValueError("changed_since must be a UTC timestamp")

    def subject_condition(self) -> ColumnElement[bool]:
        """The SQL condition on `subject` rows that selects this scope."""
        in_study = col(Subject.study_id) == self.study_id
        if self.kind is ScopeKind.SITE:
            return in_study & (col(Subject.site_id) == self.site_id)
        if self.kind is ScopeKind.COHORT:
            condition = in_study & (col(Subject.dose_level) == self.dose_level)
            if self.phase is not None:
                condition = condition & (col(Subject.phase) == self.phase)
            return condition
        if self.kind is ScopeKind.SUBJECT:
            return in_study & (col(Subject.id) == self.subject_id)
        return in_study

    def describe(self, session: Session) -> str:
        """Human wording for pages, manifests and the audit trail, e.g. "cohort DL2 escalation"."""
        if self.kind is ScopeKind.SITE:
            site = session.get(Site, self.site_id)
            text = f"site {site.number} {site.name}" if site else f"site {self.site_id}"
        elif self.kind is ScopeKind.COHORT:
            text = " ".join(filter(None, ["cohort", self.dose_level, self.phase]))
        elif self.kind is ScopeKind.SUBJECT:
            subject = session.get(Subject, self.subject_id)
            text = f"subject {subject.subject_key if subject else self.subject_id}"
        else:
            text = "whole study"
        if self.changed_since is not None:
            text += f", changed since {self.changed_since.isoformat(timespec='seconds')}"
        return text


def scoped_subject_ids(session: Session, scope: ExportScope) -> list[int]:
    """Ids of the subjects in scope, ordered by subject key (the order every export uses)."""
    statement = (
        select(Subject.id).where(scope.subject_condition()).order_by(col(Subject.subject_key))
    )
    return [subject_id for subject_id in session.exec(statement) if subject_id is not None]


def scoped_subjects(session: Session, scope: ExportScope) -> Iterator[Subject]:
    """The subjects in scope, one at a time and detached after use, so that a study of any
    size streams with memory bounded by one subject."""
    for subject_id in scoped_subject_ids(session, scope):
        subject = session.get(Subject, subject_id)
        if subject is not None:
            yield subject
            session.expunge(subject)

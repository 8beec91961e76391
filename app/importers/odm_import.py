"""ODM 1.3.2 import: ClinicalData written by another system (or by TrialDesk's own snapshot
export) loaded into the study through the checks, derivations and audit trail of data entry.

What an import does, and the decisions behind it:

- The file is validated against the ODM 1.3.2 schema first, streaming, so a file of any size
  fits in memory; a schema error is reported with its line (a file over LINE_LOOKUP_BYTES
  gives the first error without one) and nothing else is read. The data is then read one
  SubjectData at a time (lxml iterparse), each freed once stored. Annotations follow the
  convention of `app.exporters.odm_common`: coded FlagValues, a date or reason as Comment.
- Every ClinicalData must carry this study's OID; another study's file is refused as a whole.
  A MetaDataVersionOID other than that of the definition this server runs (another system's,
  or an older build's) is a warning: every value is checked against the running definition
  anyway, so a file still fits or is refused item by item.
- The file is a Snapshot (current data). Of a Transactional file, a history of Insert,
  Update and Remove, only TrialDesk's query and lock Annotations are read, for subjects
  already here: replaying another system's value history is not an import, but the history
  of queries restores what a snapshot cannot hold (each transition).
- Subjects are added, never updated: a SubjectKey already in the database (or twice in the
  file) is a problem. Updating a casebook from a file would need a reason for every changed
  value of a complete form and a Transactional file to say what was removed; an import does
  not guess them. The file's SubjectKey is kept (`NewSubject` with a key).
- Sites are not created: SiteRef names a Location whose OID must be a site the administrator
  set up (sites carry the numbers screening numbers are made from). An unknown site is a
  problem of that subject.
- Every change goes through `app.crf.write.apply`, the write path of the pages, authorised by
  the import permission at the subject's site: the same parsing,
  hard ranges, code lists, partial-date rules, show-if conditions and derivations, and an
  audit record per value with the source `import:<file name>` and the importing user.
  Soft-range flags are warnings (the source system had them confirmed). A value for a question
  that does not apply (its show-if is false) or that contradicts a preset row is a problem:
  storing it would break the form's rules, dropping it would lose data silently.
- Derived items in the file are recomputed by TrialDesk; a different value in the file is a
  warning and TrialDesk's value is stored (the derivation is part of the study definition).
- Form status comes from the FormData's Annotation Flag coded in CL.FORMSTATUS: `complete`
  (needs every required answer, as on the page), `in_progress`, or `not_done` (the reason is the
  Annotation's Comment); a form without the flag is in progress.
- Visit dates come from the StudyEventData's flag `occurred` in CL.VISITSTATUS (the date is
  the Comment), audited; a future date is refused.
- Subject status (its effective date is the Comment), dose level and phase come from
  SubjectData's Annotation Flags (CL.SUBJECTSTATUS, CL.DOSELEVEL, CL.PHASE) and are set
  directly (`ImportedStatus`) with one audit record naming the import, not through the
  subject path's transitions: the source system was the system of record when the subject
  moved, and the transitions check today's date and the order of steps, which an imported
  history has already been through.
- Queries and freezes or locks in TrialDesk's own Annotations are restored after the
  subject's values (`odm_review_import`), with their states and texts.
- The file's AuditRecords are not replayed: TrialDesk's trail records the import itself; the
  history before it stays with the source system and in the file.
- Signatures (and AdminData's SignatureDefs) are read past, not restored: a signature
  attests data as they were in the system it was made in; the investigator signs the
  imported data in TrialDesk. So are the safety board's decisions (ClinicalData's own
  Signatures and Annotations, `app.exporters.odm_board`): the board signs them where it sits.
- Short transactions, never one for the whole file (on SQLite that would hold the database
  for every other user for the whole import). Two passes over the file:
  1. Check: every subject is written in its own short transaction that is rolled back, so
     nothing is stored and the full report (problems with line and subject, warnings) is
     collected.
  2. Store, only if the file is accepted (no problem, or with `valid_subjects_only` no problem
     of the file itself and at least one subject without problems): the subjects without
     problems are written again, each in its own committed transaction, through the same
     write path. Other users work between subjects.
  Progress is reported between subjects (`Progress`). A subject that fails in pass 2 (say a
  user added its SubjectKey meanwhile) is not stored; its problems are added to the report
  and it is listed in `not_stored`. The subjects stored before it stay stored: with
  `valid_subjects_only` off, "nothing unless the whole file is accepted" holds for what pass 1
  checked, and `stored_subjects` says exactly which subjects were stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path

from lxml import etree
from sqlalchemy import Engine
from sqlmodel import Session, select

from app import audit
from app.access import Access, Permission
from app.crf import write
from app.crf.changes import (
    Change,
    FormEdit,
    FormNotDone,
    FormRef,
    FormValues,
    ImportedStatus,
    NewSubject,
    NotFound,
    Refused,
    SubjectKeyTaken,
    VisitDate,
)
from app.crf.engine import FieldKey, FormEvaluation
from app.exporters.odm_common import ODM_NS, q
from app.exporters.odm_metadata import (
    DOSE_LEVEL_CODELIST,
    FORM_STATUS_CODELIST,
    PHASE_CODELIST,
    SUBJECT_STATUS_CODELIST,
    VISIT_OCCURRED,
    VISIT_STATUS_CODELIST,
    metadata_version_oid,
)
from app.importers import odm_review_import
from app.models import FormStatus, Site, Subject, pk, utcnow
from app.schemas import SchemaInvalid, odm_schema, safe_parser, validate_streaming
from app.study.loader import LOG_EVENT_OID, Study
from app.study.model import FormDef, ItemDef, ItemGroupDef

IMPORTED_STATUSES = (FormStatus.IN_PROGRESS, FormStatus.COMPLETE, FormStatus.NOT_DONE)
MAX_SOURCE_LENGTH = 200
"""Length of AuditRecord.source: `import:` and the file name, cut to fit."""
LINE_LOOKUP_BYTES = 20 * 1024 * 1024
"""Largest file parsed whole to give its schema errors' lines (see `_schema_problems`)."""
MAX_SCHEMA_PROBLEMS = 50
MAX_PROBLEMS = 1000
"""Problems after which reading stops: a file this wrong is refused whatever the rest holds."""
SUBJECT_KEY_LENGTH: int = Subject.__table__.c.subject_key.type.length  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ImportProblem:
    """One thing wrong (or, as a warning, worth checking) at a place in the file."""

    line: int | None
    path: str
    """SubjectKey/StudyEventOID[repeat]/FormOID[repeat]/ItemGroupOID[repeat]/ItemOID."""
    message: str
    subject_key: str | None = None
    """The subject it belongs to; None for a problem of the file as a whole."""

    def __str__(self) -> str:
        place = f"line {self.line}" if self.line else "file"
        return f"{place}: {self.path}: {self.message}" if self.path else f"{place}: {self.message}"


@dataclass
class ImportReport:
    """What an import stored (zero when refused), and every problem and warning found."""

    file_name: str
    stored: bool = False
    subjects: int = 0
    forms: int = 0
    items: int = 0
    queries: int = 0
    """Queries restored or moved to the file's state (`odm_review_import`)."""
    locks: int = 0
    """Freezes and locks restored."""
    problems: list[ImportProblem] = field(default_factory=list)
    warnings: list[ImportProblem] = field(default_factory=list)
    skipped_subjects: list[str] = field(default_factory=list)
    """Subjects left out because of their problems (with `valid_subjects_only`)."""
    stored_subjects: list[str] = field(default_factory=list)
    """The SubjectKeys stored, in the file's order."""
    not_stored: list[str] = field(default_factory=list)
    """Subjects accepted by the check but refused when stored (changed meanwhile)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ImportReport:
        data = json.loads(text)
        for key in ("problems", "warnings"):
            data[key] = [ImportProblem(**entry) for entry in data[key]]
        return cls(**data)

    def format(self) -> str:
        """The report as text for the command line and the import page."""
        if self.stored:
            lines = [
                f"{self.file_name}: imported {self.subjects} subjects, {self.forms} forms, "
                f"{self.items} item values."
            ]
            if self.queries or self.locks:
                lines.append(f"Restored {self.queries} queries and {self.locks} freezes or locks.")
            if self.skipped_subjects:
                lines.append(
                    f"Left out {len(self.skipped_subjects)} subject(s) with problems: "
                    + ", ".join(self.skipped_subjects)
                )
            if self.not_stored:
                lines.append(
                    "Not stored, refused while storing (changed meanwhile): "
                    + ", ".join(self.not_stored)
                )
        else:
            lines = [
                f"{self.file_name}: refused, nothing was stored ({len(self.problems)} problem(s))."
            ]
        if self.problems:
            lines += ["Problems:", *(f"  {problem}" for problem in self.problems)]
        if self.warnings:
            lines += ["Warnings:", *(f"  {warning}" for warning in self.warnings)]
        return "\n".join(lines)


Progress = Callable[[str, int, int], None]
"""Told `(phase, done, total)` between subjects: phase "checking", then "storing"."""


def import_odm(
    engine: Engine,
    study: Study,
    path: Path,
    *,
    access: Access,
    actor: audit.Actor,
    valid_subjects_only: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Load the ClinicalData of an ODM 1.3.2 file into `study` in short transactions of its
    own (see the module docstring: a check pass that stores nothing, then a store pass one
    committed transaction per subject).

    `report.stored` says whether the file was accepted and pass 2 ran; `stored_subjects`
    which subjects it stored. Every change is audited as `actor.user` with the source
    `import:<file name>`. The caller checks that the user may import (Permission.IMPORT);
    subjects go only to sites where `access` holds it (another site is reported like a site
    that does not exist). `access` and `actor` must not depend on an open session.
    """
    report = ImportReport(path.name)
    tell = progress or (lambda phase, done, total: None)
    try:
        validate_streaming(path, odm_schema())
    except SchemaInvalid as error:
        report.problems += _schema_problems(path, error)
        return report
    source = f"import:{path.name}"[:MAX_SOURCE_LENGTH]
    author = write.Author(access, replace(actor, source=source), importing=True)
    checker = _Reader(engine, study, author, report, _Pass("checking", count_subjects(path), tell))
    checker.read(path)
    file_problems = any(problem.subject_key is None for problem in report.problems)
    if file_problems or not checker.good or (report.problems and not valid_subjects_only):
        return report
    scratch = ImportReport(path.name)
    storing = _Pass("storing", len(checker.good), tell, store=set(checker.good))
    storer = _Reader(engine, study, author, scratch, storing)
    storer.read(path)
    report.problems += scratch.problems
    report.stored = True
    report.subjects = storer.stored.subjects
    report.forms = storer.stored.forms
    report.items = storer.stored.items
    report.queries = storer.stored.queries
    report.locks = storer.stored.locks
    report.skipped_subjects = checker.skipped
    report.stored_subjects = storer.good
    report.not_stored = storer.skipped
    return report


def count_subjects(path: Path) -> int:
    """How many SubjectData the file holds (a quick streaming read)."""
    count = 0
    for _event, element in etree.iterparse(
        str(path), tag=q("SubjectData"), resolve_entities=False, no_network=True
    ):
        count += 1
        _release(element)
    return count


def _schema_problems(path: Path, error: SchemaInvalid) -> list[ImportProblem]:
    """The schema errors of a file, with their lines. Streaming validation stops at the first
    error and does not know its line; a file small enough is parsed whole to find every error
    and its line (a full parse takes about ten times the file's size in memory)."""
    cause = error.__cause__
    if not isinstance(cause, etree.XMLSyntaxError):
        return [_schema_problem(None, str(error))]
    if cause.lineno or path.stat().st_size > LINE_LOOKUP_BYTES:
        return [_schema_problem(cause.lineno, cause.msg)]
    try:
        document = etree.parse(str(path), safe_parser())
    except etree.XMLSyntaxError as syntax:
        return [_schema_problem(syntax.lineno, syntax.msg)]
    schema = odm_schema()
    if schema.validate(document):  # not expected: both validations use the same schema
        return [_schema_problem(None, cause.msg)]
    entries = list(schema.error_log)  # type: ignore[call-overload]  # iterable; stubs lack it
    return [_schema_problem(e.line, e.message) for e in entries[:MAX_SCHEMA_PROBLEMS]]


def _schema_problem(line: int | None, message: str) -> ImportProblem:
    return ImportProblem(
        line or None, "", f"not valid ODM 1.3.2: {message.replace(f'{{{ODM_NS}}}', '')}"
    )


@dataclass
class _Counts:
    subjects: int = 0
    forms: int = 0
    items: int = 0
    queries: int = 0
    locks: int = 0


@dataclass
class _Pass:
    """One pass over the file: its name, how many subjects it goes through, whom to tell,
    and, for the store pass, the subjects to store (the check pass stores none)."""

    phase: str
    total: int
    tell: Progress
    store: set[str] | None = None
    done: int = 0

    def advance(self) -> None:
        self.done += 1
        self.tell(self.phase, self.done, self.total)


@dataclass
class _FormValues:
    """The values of one FormData as the file gives them, with where each came from."""

    rows: dict[str, dict[int, dict[str, str | None]]] = field(default_factory=dict)
    derived: dict[FieldKey, str | None] = field(default_factory=dict)
    lines: dict[FieldKey, int | None] = field(default_factory=dict)
    group_paths: dict[tuple[str, int], str] = field(default_factory=dict)


class _Reader:
    """Reads an ODM file one SubjectData at a time and writes each subject in a transaction
    of its own: rolled back in the check pass, committed in the store pass."""

    def __init__(
        self, engine: Engine, study: Study, author: write.Author, report: ImportReport, run: _Pass
    ) -> None:
        self.engine = engine
        self.study = study
        self.author = author
        self.report = report
        self.run = run
        self.now = utcnow()
        allowed = author.access.site_ids(Permission.IMPORT)
        with Session(engine) as session:
            self.sites = {
                site.oid: pk(site)
                for site in session.exec(select(Site).where(Site.study_id == study.id))
                if allowed is None or site.id in allowed
            }
        self.session: Session | None = None
        """The transaction of the subject being written."""
        self.stored = _Counts()
        self.good: list[str] = []
        """The subjects written without problems (and, in the store pass, committed)."""
        self.skipped: list[str] = []
        self.keys_seen: set[str] = set()
        self.accepting = False
        """Whether the ClinicalData being read is this study's."""
        self.subject_key: str | None = None
        self.warnings_before = 0
        self.history: dict[str, tuple[int | None, list[odm_review_import.Note]]] | None = None
        """A Transactional file's query and lock notes by SubjectKey (None for a Snapshot)."""

    def _apply(self, change: Change) -> write.Outcome:
        assert self.session is not None, "writes happen within a subject's transaction"
        return write.apply(self.session, self.study, change, by=self.author, now=self.now)

    def problem(self, line: int | None, path: str, message: str) -> None:
        self.report.problems.append(ImportProblem(line, path, message, self.subject_key))

    def warning(self, line: int | None, path: str, message: str) -> None:
        self.report.warnings.append(ImportProblem(line, path, message, self.subject_key))

    # -- the document -------------------------------------------------------------------------

    def read(self, path: Path) -> None:
        clinical_data = 0
        for event, element in etree.iterparse(
            str(path), events=("start", "end"), resolve_entities=False, no_network=True
        ):
            if event == "start":
                if element.tag == q("ODM") and element.get("FileType") == "Transactional":
                    self.history = {}
                if element.tag == q("ClinicalData"):
                    clinical_data += 1
                    self.accepting = self._is_this_study(element)
                continue
            if element.tag == q("SubjectData"):
                key = element.get("SubjectKey", "")
                if self.history is not None and self.accepting:
                    notes = odm_review_import.notes(element, key)
                    self.history.setdefault(key, (_line(element), []))[1].extend(notes)
                elif self.accepting and (self.run.store is None or key in self.run.store):
                    with Session(self.engine) as session:
                        self.session = session
                        self._subject(element)
                        self.session = None
                    self.run.advance()
                _release(element)
                if len(self.report.problems) >= MAX_PROBLEMS:
                    self.subject_key = None
                    self.problem(None, "", f"stopped reading after {MAX_PROBLEMS} problems")
                    return
            elif _depth(element) <= 1:  # Study, AdminData, ...: not needed once read
                _release(element)
        if clinical_data == 0:
            self.problem(None, "", f"the file holds no ClinicalData for {self.study.info.oid}")
        if self.history is not None:
            self._restore_history(self.history)

    def _restore_history(
        self, history: dict[str, tuple[int | None, list[odm_review_import.Note]]]
    ) -> None:
        """A Transactional file's queries and locks, subject by subject once all are read
        (a query's transitions are spread over the file)."""
        if self.run.store is None:
            self.run.total = len(history)  # a subject has many SubjectData in a history
        for key, (line, notes) in history.items():
            if self.run.store is None or key in self.run.store:
                with Session(self.engine) as session:
                    self.session = session
                    self._review_only(key, line, notes)
                    self.session = None
                self.run.advance()

    def _review_only(self, key: str, line: int | None, notes: list[odm_review_import.Note]) -> None:
        """Restore the queries and locks a Transactional file holds for a subject already
        here (its values are not replayed: see the module docstring)."""
        assert self.session is not None
        self.subject_key = key
        before = len(self.report.problems)
        self.warnings_before = len(self.report.warnings)
        subject = self.session.exec(
            select(Subject).where(Subject.study_id == self.study.id, Subject.subject_key == key)
        ).first()
        if subject is None or subject.site_id not in self.sites.values():
            self.problem(
                line, key, "not in TrialDesk: a Transactional file restores only the queries "
                "and locks of subjects already here (import a Snapshot of their data first)",
            )  # fmt: skip
            self._skip(key)
            return
        self.now = utcnow()
        restored = odm_review_import.restore(
            self.session, subject, notes, self._apply, self.problem, self.warning
        )
        if self._finish(key, before):
            self.stored.queries += restored.queries
            self.stored.locks += restored.locks

    def _finish(self, key: str, problems_before: int) -> bool:
        """End the subject's transaction: rolled back when it has problems (it is skipped)
        or in the check pass, else committed; True when the subject was accepted."""
        assert self.session is not None
        if len(self.report.problems) > problems_before:
            self.session.rollback()
            self._skip(key)
            return False
        if self.run.store is None:
            self.session.rollback()
        else:
            self.session.commit()
        self.good.append(key)
        return True

    def _is_this_study(self, element: etree._Element) -> bool:
        study_oid = element.get("StudyOID")
        mdv = element.get("MetaDataVersionOID")
        line = _line(element)
        expected = self.study.info.oid
        if study_oid != expected:
            self.problem(
                line,
                "ClinicalData",
                f"study OID {study_oid} is not {expected}: the file holds another study's data",
            )
            return False
        if mdv != metadata_version_oid(self.study):
            self.warning(
                line,
                "ClinicalData",
                f"MetaDataVersionOID {mdv} is not {metadata_version_oid(self.study)}, the "
                f"{expected} definition this server runs; values are checked against it",
            )
        return True

    # -- subjects -----------------------------------------------------------------------------

    def _subject(self, element: etree._Element) -> None:
        key = element.get("SubjectKey", "")
        self.subject_key = key
        before = len(self.report.problems)
        self.warnings_before = len(self.report.warnings)
        site = self._site(element, key)
        if key in self.keys_seen:
            self.problem(_line(element), key, "this SubjectKey appears twice in the file")
        elif len(key) > SUBJECT_KEY_LENGTH:
            self.problem(_line(element), key, f"longer than {SUBJECT_KEY_LENGTH} characters")
        self.keys_seen.add(key)
        if site is None or len(self.report.problems) > before:
            self._skip(key)
            return
        assert self.session is not None
        self.now = utcnow()
        counts = _Counts(subjects=1)
        try:
            subject = self._apply(NewSubject(site, key)).subject
        except SubjectKeyTaken:
            self.session.rollback()
            self.problem(
                _line(element), key, "a subject with this SubjectKey is already in TrialDesk"
            )
            self._skip(key)
            return
        seen: set[FormRef] = set()
        for event_el in element.iterchildren(q("StudyEventData")):
            self._event(subject, event_el, key, seen, counts)
        self._subject_status(element, subject, key)
        review = odm_review_import.notes(element, key)
        restored = odm_review_import.restore(
            self.session, subject, review, self._apply, self.problem, self.warning
        )
        if not self._finish(key, before):
            return
        self.stored.queries += restored.queries
        self.stored.locks += restored.locks
        self.stored.subjects += counts.subjects
        self.stored.forms += counts.forms
        self.stored.items += counts.items

    def _skip(self, key: str) -> None:
        """Leave a subject out; its warnings go too (they follow from its problems)."""
        self.skipped.append(key)
        del self.report.warnings[self.warnings_before :]

    def _site(self, element: etree._Element, key: str) -> int | None:
        site_ref = element.find(q("SiteRef"))
        if site_ref is None:
            self.problem(_line(element), key, "no SiteRef: the subject's site is needed")
            return None
        oid = site_ref.get("LocationOID", "")
        site = self.sites.get(oid)
        if site is None:
            self.problem(
                _line(site_ref),
                key,
                f"site {oid} is not a TrialDesk site (an administrator adds sites first)",
            )
        return site

    def _subject_status(self, element: etree._Element, subject: Subject, key: str) -> None:
        """Status (with its effective date), dose level and phase from the SubjectData's
        flags, set directly (the module docstring says why not through the transitions)."""
        flags = _flags(element)
        choices = {
            SUBJECT_STATUS_CODELIST: {s.code for s in self.study.subject_path.statuses},
            DOSE_LEVEL_CODELIST: {d.code for d in self.study.info.dose_levels},
            PHASE_CODELIST: {p.code for p in self.study.info.phases},
        }
        values: dict[str, str] = {}
        for codelist, allowed in choices.items():
            flag = flags.get(codelist)
            if flag is None:
                continue
            if flag.value not in allowed:
                self.problem(flag.line, key, f"{flag.value!r} is not a code of {codelist}")
            else:
                values[codelist] = flag.value
        status_flag = flags.get(SUBJECT_STATUS_CODELIST)
        effective = self._date(status_flag, key) if status_flag else None
        if not values:
            return
        change = ImportedStatus(
            pk(subject), values.get(SUBJECT_STATUS_CODELIST, subject.status), effective,
            values.get(DOSE_LEVEL_CODELIST), values.get(PHASE_CODELIST),
        )  # fmt: skip
        try:
            self._apply(change)
        except Refused as refusal:
            self.problem(status_flag.line if status_flag else None, key, str(refusal))

    def _date(self, flag: _Flag, path: str) -> date | None:
        """The date in a flag's Comment (a status's effective date, a visit's date)."""
        if flag.comment is None:
            return None
        try:
            return date.fromisoformat(flag.comment)
        except ValueError:
            self.problem(flag.line, path, f"{flag.comment!r} is not a date (YYYY-MM-DD)")
            return None

    # -- events and forms ---------------------------------------------------------------------

    def _event(
        self,
        subject: Subject,
        element: etree._Element,
        key: str,
        seen: set[FormRef],
        counts: _Counts,
    ) -> None:
        oid = element.get("StudyEventOID", "")
        repeat_text = element.get("StudyEventRepeatKey")
        path = f"{key}/{_step(oid, repeat_text)}"
        visit = self.study.visit(oid)
        if visit is None and oid != LOG_EVENT_OID:
            self.problem(_line(element), path, f"unknown StudyEventOID {oid}")
            return
        repeat = self._repeat(element, path, repeat_text, visit is not None and visit.repeating)
        if repeat is None:
            return
        occurred = _flags(element).get(VISIT_STATUS_CODELIST)
        if occurred is not None and occurred.value == VISIT_OCCURRED:
            visit_date = self._date(occurred, path)
            if visit_date is not None:
                try:
                    self._apply(VisitDate(pk(subject), oid, repeat, visit_date))
                except (Refused, NotFound) as refusal:
                    self.problem(occurred.line, path, f"visit date: {refusal}")
        for form_el in element.iterchildren(q("FormData")):
            self._form(subject, oid, repeat, form_el, path, seen, counts)

    def _repeat(
        self, element: etree._Element, path: str, text: str | None, repeating: bool
    ) -> int | None:
        """The repeat key of an element (1 when absent); None, with a problem, when unusable."""
        if text is None:
            return 1
        if not text.isdigit() or int(text) < 1:
            self.problem(_line(element), path, f"repeat key {text!r} is not a number from 1")
            return None
        if int(text) != 1 and not repeating:
            self.problem(_line(element), path, "does not repeat: its repeat key must be 1")
            return None
        return int(text)

    def _form(
        self,
        subject: Subject,
        event_oid: str,
        event_repeat: int,
        element: etree._Element,
        event_path: str,
        seen: set[FormRef],
        counts: _Counts,
    ) -> None:
        oid = element.get("FormOID", "")
        repeat_text = element.get("FormRepeatKey")
        path = f"{event_path}/{_step(oid, repeat_text)}"
        line = _line(element)
        if oid not in self.study.forms_of_event(event_oid):
            known = oid in self.study.forms
            message = f"form {oid} is not collected at {event_oid}" if known else "unknown FormOID"
            self.problem(line, path, message if known else f"{message} {oid}")
            return
        repeating = self.study.is_repeating_form(event_oid, oid)
        repeat = self._repeat(element, path, repeat_text, repeating)
        if repeat is None:
            return
        ref = FormRef(event_oid, event_repeat, oid, repeat)
        if ref in seen:
            self.problem(line, path, "this FormData appears twice for the subject")
            return
        seen.add(ref)
        form = self.study.form(oid)
        status, reason = self._form_status(element, path)
        values = self._values(form, element, path)
        if status == FormStatus.NOT_DONE:
            self._not_done(subject, ref, values, reason, line, path)
            return
        edit = FormEdit(values.rows, base_version=0, complete=status == FormStatus.COMPLETE)
        try:
            outcome = self._apply(FormValues(pk(subject), ref, edit))
        except (Refused, NotFound) as refusal:
            self.problem(line, path, str(refusal))
            return
        self._check(form, outcome.evaluation, values, line, path)
        if outcome.saved:
            counts.forms += 1
            counts.items += outcome.changed

    def _form_status(self, element: etree._Element, path: str) -> tuple[str, str | None]:
        """The form's status and, for a form not done, the reason; in progress by default."""
        flag = _flags(element).get(FORM_STATUS_CODELIST)
        if flag is None:
            return FormStatus.IN_PROGRESS, None
        if flag.value not in IMPORTED_STATUSES:
            allowed = ", ".join(IMPORTED_STATUSES)
            self.problem(flag.line, path, f"form status {flag.value!r} is not one of {allowed}")
            return FormStatus.IN_PROGRESS, None
        return flag.value, flag.comment

    def _not_done(
        self,
        subject: Subject,
        ref: FormRef,
        values: _FormValues,
        reason: str | None,
        line: int | None,
        path: str,
    ) -> None:
        if any(
            v is not None
            for rows in values.rows.values()
            for r in rows.values()
            for v in r.values()
        ):
            self.problem(line, path, "a form that was not done cannot hold values")
            return
        try:
            self._apply(FormNotDone(pk(subject), ref, 0, reason))
        except (Refused, NotFound) as refusal:
            self.problem(line, path, f"not done: {refusal}")

    # -- items --------------------------------------------------------------------------------

    def _values(self, form: FormDef, element: etree._Element, form_path: str) -> _FormValues:
        """The file's values of one form by group, repeat and item name; unknown OIDs and
        repeated items are problems."""
        values = _FormValues()
        groups = {group.oid: group for group in form.item_groups}
        for group_el in element.iterchildren(q("ItemGroupData")):
            oid = group_el.get("ItemGroupOID", "")
            repeat_text = group_el.get("ItemGroupRepeatKey")
            path = f"{form_path}/{_step(oid, repeat_text)}"
            group = groups.get(oid)
            if group is None:
                self.problem(_line(group_el), path, f"unknown ItemGroupOID {oid} in {form.oid}")
                continue
            repeat = self._repeat(group_el, path, repeat_text, group.repeating)
            if repeat is None:
                continue
            values.group_paths[(oid, repeat)] = path
            row = values.rows.setdefault(oid, {}).setdefault(repeat, {})
            items = {item.oid: item for item in group.items}
            for item_oid, value, line in _item_data(group_el):
                item = items.get(item_oid)
                if item is None:
                    self.problem(line, f"{path}/{item_oid}", f"unknown ItemOID {item_oid} in {oid}")
                    continue
                key = (oid, repeat, item.name)
                if key in values.lines:
                    self.problem(line, f"{path}/{item_oid}", "this item appears twice in its group")
                    continue
                values.lines[key] = line
                if item.is_derived:
                    values.derived[key] = value
                else:
                    row[item.name] = value
        return values

    def _check(
        self,
        form: FormDef,
        evaluation: FormEvaluation,
        values: _FormValues,
        form_line: int | None,
        form_path: str,
    ) -> None:
        """Report what the evaluation refused or changed, per item."""
        items = {item.name: (group, item) for group in form.item_groups for item in group.items}

        def place(key: FieldKey) -> tuple[int | None, str]:
            group_oid, repeat, name = key
            group_path = values.group_paths.get(
                (group_oid, repeat), f"{form_path}/{group_oid}[{repeat}]"
            )
            return values.lines.get(key, form_line), f"{group_path}/{items[name][1].oid}"

        for key, message in evaluation.errors.items():
            self.problem(*place(key), message)
        if evaluation.errors:
            return  # show-if and derived results built on a refused value are no news
        for group_oid, rows in values.rows.items():
            for repeat, row in rows.items():
                for name, value in row.items():
                    key = (group_oid, repeat, name)
                    group, item = items[name]
                    if value is None or not value.strip():
                        continue
                    if key in evaluation.hidden:
                        self.problem(
                            *place(key),
                            f"has the value {value!r} but does not apply here (its show-if "
                            "condition is false)",
                        )
                    elif (preset := _preset(group, repeat, item)) is not None and preset != value:
                        self.problem(
                            *place(key), f"is fixed to {preset!r} on this form, not {value!r}"
                        )
        for key, message in evaluation.flags.items():
            self.warning(*place(key), message)
        for key, value in values.derived.items():
            group_oid, repeat, name = key
            derived = evaluation.values.get(group_oid, {}).get(repeat, {}).get(name)
            if value != derived:
                self.warning(
                    *place(key),
                    f"the file's derived value {value!r} differs from TrialDesk's {derived!r}; "
                    "TrialDesk's is stored",
                )


def _preset(group: ItemGroupDef, repeat: int, item: ItemDef) -> str | None:
    if not group.repeating or repeat > len(group.rows):
        return None
    return group.rows[repeat - 1].get(item.name)


def _item_data(group: etree._Element) -> Iterator[tuple[str, str | None, int | None]]:
    """(ItemOID, value, line) of each ItemData, or typed ItemData (ItemDataString, ...), of an
    ItemGroupData; IsNull="Yes" reads as no value."""
    for element in group:
        tag = etree.QName(element).localname
        if not tag.startswith("ItemData"):
            continue
        if element.get("IsNull") == "Yes":
            value = None
        else:
            value = element.get("Value") if tag == "ItemData" else element.text
        yield element.get("ItemOID", ""), value, _line(element)


@dataclass(frozen=True)
class _Flag:
    """A coded FlagValue of an Annotation, with the Annotation's Comment (a date or reason)."""

    value: str
    line: int | None
    comment: str | None


def _flags(element: etree._Element) -> dict[str, _Flag]:
    """The element's Annotation flags by CodeListOID (see `odm_common` for the convention)."""
    flags: dict[str, _Flag] = {}
    for annotation in element.iterchildren(q("Annotation")):
        comment = (annotation.findtext(q("Comment")) or "").strip() or None
        for value in annotation.iterfind(f"{q('Flag')}/{q('FlagValue')}"):
            codelist = value.get("CodeListOID")
            if codelist:
                flags[codelist] = _Flag((value.text or "").strip(), _line(value), comment)
    return flags


def _line(element: etree._Element) -> int | None:
    line = element.sourceline
    return line if isinstance(line, int) else None


def _step(oid: str, repeat_text: str | None) -> str:
    return f"{oid}[{repeat_text}]" if repeat_text is not None else oid


def _depth(element: etree._Element) -> int:
    depth = 0
    parent = element.getparent()
    while parent is not None:
        depth += 1
        parent = parent.getparent()
    return depth


def _release(element: etree._Element) -> None:
    """Free an element that has been read, and its already-read siblings."""
    element.clear()
    parent = element.getparent()
    while parent is not None and element.getprevious() is not None:
        del parent[0]

"""The one write path: every change to a casebook passes through `apply`, whichever channel it
comes from (pages, API, ODM import, demo, command line).

`apply` runs, in the caller's transaction and in this order:
1. authorise: the user's permission for the change at the subject's site;
2. load and version-check: the stored state, refused when someone saved since;
3. guard: refuses a target the casebook does not offer (a repeat the schedule lacks) and a
   change to frozen or locked data (a signature: to locked data);
4. evaluate: types, ranges, show-if, derivations, edit checks, and the dependants of what
   changed (other forms re-derived, requirements of reached statuses checked again); errors
   refuse. Review changes (queries, locks, verifications, signatures) are planned by
   `app.crf.review_changes`, which also makes the study-wide database lock;
5. persist (`app.crf.persist`, the only code that writes clinical tables);
6. audit (`app.crf.plan_audit`): a record per change, old and new value, who, when and why;
7. consequences (`app.crf.consequences`): status alerts opened or closed, system queries
   moved, verifications of changed values dropped, signatures of the changed data broken.

Plain functions, no ORM events. Nothing here commits or rolls back: the caller's unit of work
(`app.db.unit_of_work`) does, so one user action, however many changes it makes, is stored
whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from app import audit
from app.access import Access, AccessDenied, Permission
from app.checks.on_save import check_form_changes, check_visit_date, refusals
from app.crf import persist, reads
from app.crf.changes import (
    Change,
    DataLockRelease,
    DataLockSet,
    FormNotDone,
    FormValues,
    ImportedQuery,
    ImportedStatus,
    NewSubject,
    NotFound,
    QueryAction,
    QueryChange,
    QueryOpen,
    Sign,
    StatusRefused,
    StudyLockRelease,
    StudyLockSet,
    SubjectChange,
    SubjectStatus,
    VerifyForm,
    VisitDate,
    WithdrawVerification,
)
from app.crf.consequences import react
from app.crf.dependants import rederive
from app.crf.engine import FormEvaluation
from app.crf.form_changes import check_version, conflict_with, plan_not_done, plan_values
from app.crf.plan_audit import audit_entries
from app.crf.plans import FormPlan, Plan
from app.crf.reads import StoredForm, SubjectValues
from app.crf.review_changes import apply_to_study, plan_review
from app.crf.status import PERMISSION_OF, transition_to
from app.crf.status_alerts import check_requirements
from app.crf.subject_changes import (
    plan_imported_status,
    plan_new_subject,
    plan_status,
    plan_visit_date,
    visit_event,
)
from app.crf.values import DateLimits
from app.escalation.write_gates import infusion_refusal
from app.models import DataLock, Query, Site, StudyEventData, Subject
from app.review.locks import (
    DataLocked,
    LockPlace,
    active_locks,
    refusal,
)
from app.review.queries import QueryRefused, load_query
from app.review.study_lock import study_locks
from app.study.loader import Study
from app.study.model import FormDef, Transition


@dataclass(frozen=True)
class Author:
    """Who asks for a change: their roles, who the audit trail names, and whether the change
    comes from an ODM import (authorised by the import permission at the subject's site)."""

    access: Access
    actor: audit.Actor
    importing: bool = False


@dataclass(frozen=True)
class Outcome:
    """What `apply` did. `saved` is False when the evaluation refused the change (its errors
    say why; nothing was written)."""

    plan: Plan
    saved: bool

    @property
    def subject(self) -> Subject:
        assert self.plan.subject is not None
        return self.plan.subject

    @property
    def evaluation(self) -> FormEvaluation:
        assert self.plan.evaluation is not None
        return self.plan.evaluation

    @property
    def form(self) -> FormPlan:
        """The form the change was made to (form changes only)."""
        return self.plan.forms[0]

    @property
    def version(self) -> int:
        return self.form.new_version if self.saved else self.form.base_version

    @property
    def changed(self) -> int:
        """Values the change stored in the form it was made to, derived ones included."""
        return len(self.form.changes) if self.saved else 0


@dataclass(frozen=True)
class Loaded:
    """What the load step found: the site of a new subject, a form and its stored state, a
    visit's stored row, the transition a status change makes."""

    site: Site | None = None
    form: FormDef | None = None
    stored: StoredForm | None = None
    event: StudyEventData | None = None
    transition: Transition | None = None
    query: Query | None = None


def apply(session: Session, study: Study, change: Change, *, by: Author, now: datetime) -> Outcome:
    """Make `change` in the session's transaction (the caller commits).

    Raises NotFound (not visible to the user, or not in the casebook), AccessDenied,
    SaveConflict, or a Refused naming what is wrong; returns an unsaved Outcome when a form's
    values need correcting (its evaluation's errors).
    """
    if isinstance(change, StudyLockSet | StudyLockRelease):
        if by.importing:
            raise AccessDenied("an import does not freeze or lock the study")
        return Outcome(apply_to_study(session, study, change, by.access, by.actor, now), True)
    subject = _authorise(session, study, change, by)
    loaded = _load(session, study, subject, change)
    locks = _guard(session, study, subject, change, loaded)
    plan = _evaluate(session, study, subject, change, loaded, now, by, locks)
    if plan.refused:
        return Outcome(plan, saved=False)
    _guard_dependants(plan, locks)
    user_id = by.actor.user.id if by.actor.user else None
    persist.persist(session, plan, user_id=user_id, now=now)
    audit.record_all(session, audit_entries(plan, by.actor, now))
    react(session, study, plan, by.actor, now)
    return Outcome(plan, saved=True)


# -- 1. authorise -----------------------------------------------------------------------------


def _authorise(session: Session, study: Study, change: SubjectChange, by: Author) -> Subject | None:
    """The subject the change is for (None for a new subject), once the user may make it."""
    if isinstance(change, NewSubject):
        site = session.get(Site, change.site_id)
        if site is None or site.study_id != by.access.study_id:
            raise NotFound(f"site {change.site_id}")
        by.access.require(_permission(by, Permission.REGISTER_SUBJECT), site.id)
        return None
    seeing = Permission.IMPORT if by.importing else Permission.VIEW_SUBJECTS
    subject = reads.get_subject(session, by.access, change.subject_id, seeing)
    match change:
        case SubjectStatus():
            transition = transition_to(study, subject, change.to)
            if transition is None:
                current = study.subject_path.status(subject.status)
                label = current.label if current else subject.status
                raise StatusRefused(
                    f"A subject who is {label.lower()} cannot move to "
                    f"{change.to.replace('_', ' ')}."
                )
            permission = PERMISSION_OF[transition.permission]
        case ImportedStatus():
            if not by.importing:
                raise StatusRefused("A status is set directly only by an ODM import.")
            permission = Permission.IMPORT
        case ImportedQuery():
            if not by.importing:
                raise QueryRefused("A query is restored with its state only by an ODM import.")
            permission = Permission.IMPORT
        case QueryChange(action=QueryAction.ANSWER):
            permission = Permission.ANSWER_QUERIES
        case DataLockSet() | DataLockRelease():
            permission = Permission.LOCK_DATA
        case VerifyForm() | WithdrawVerification():
            permission = Permission.VERIFY_DATA
        case Sign():
            permission = Permission.SIGN
        case QueryOpen() | QueryChange():
            permission = Permission.MANAGE_QUERIES
        case _:
            permission = Permission.ENTER_DATA
    by.access.require(_permission(by, permission), subject.site_id)
    return subject


def _permission(by: Author, permission: Permission) -> Permission:
    return Permission.IMPORT if by.importing else permission


# -- 2. load and version-check ----------------------------------------------------------------


def _load(session: Session, study: Study, subject: Subject | None, change: SubjectChange) -> Loaded:
    match change:
        case NewSubject():
            return Loaded(site=session.get(Site, change.site_id))
        case VerifyForm() | WithdrawVerification():
            assert subject is not None
            scheduled = reads.scheduled_form(session, study, subject, change.ref)
            stored = reads.load_form(session, subject, scheduled, change.ref)
            return Loaded(form=scheduled, stored=stored)
        case FormValues() | FormNotDone():
            assert subject is not None
            form = study.forms.get(change.ref.form_oid)
            if form is None:
                raise NotFound(f"form {change.ref.form_oid}")
            stored = reads.load_form(session, subject, form, change.ref)
            if isinstance(change, FormValues):
                if change.edit.base_version != (stored.form_data.version if stored else 0):
                    raise conflict_with(study, form, stored, change.edit)
            else:
                check_version(form, stored, change.base_version)
            return Loaded(form=form, stored=stored)
        case VisitDate():
            assert subject is not None
            return Loaded(event=visit_event(session, study, subject, change))
        case SubjectStatus():
            assert subject is not None
            return Loaded(transition=transition_to(study, subject, change.to))
        case (
            ImportedStatus()
            | QueryOpen()
            | ImportedQuery()
            | DataLockSet()
            | DataLockRelease()
            | Sign()
        ):
            return Loaded()
        case QueryChange():
            assert subject is not None
            return Loaded(query=load_query(session, subject, change))


# -- 3. guard ---------------------------------------------------------------------------------


def _guard(
    session: Session, study: Study, subject: Subject | None, change: SubjectChange, loaded: Loaded
) -> list[DataLock]:
    """Refuse a target the casebook does not offer (a form only where the schedule has it and
    in a repeat the casebook shows, `reads.scheduled_form`) and a change to frozen or locked
    data (a freeze lets queries and verification go on, and the investigator sign; a lock
    stops them too).
    Returns the subject's freezes and locks, for `_guard_dependants`."""
    if subject is None:  # a new subject: refused while the study is frozen or locked
        refused = refusal(study_locks(session, study.id), LockPlace())
        if refused is not None:
            raise refused
        return []
    if isinstance(change, FormValues | FormNotDone):
        reads.scheduled_form(session, study, subject, change.ref)
    locks = active_locks(session, subject)
    refused = None
    match change:
        case FormValues() | FormNotDone():
            refused = refusal(locks, LockPlace.of(change.ref))
        case VisitDate():
            refused = refusal(locks, LockPlace(change.event_oid, change.event_repeat))
        case SubjectStatus() | ImportedStatus():
            refused = refusal([lock for lock in locks if lock.event_oid is None], LockPlace())
        case QueryOpen() | ImportedQuery():
            target = change.target
            place = LockPlace(
                target.event_oid, target.event_repeat, target.form_oid, target.form_repeat
            )
            refused = refusal(locks, place, queries_only=True)
        case QueryChange():
            assert loaded.query is not None
            query = loaded.query
            place = LockPlace(
                query.event_oid, query.event_repeat, query.form_oid, query.form_repeat
            )
            refused = refusal(locks, place, queries_only=True)
        case VerifyForm() | WithdrawVerification():
            refused = refusal(locks, LockPlace.of(change.ref), queries_only=True)
        case Sign(ref=ref):
            place = LockPlace.of(ref) if ref else LockPlace()
            refused = refusal(locks, place, queries_only=True)
    if refused is not None:
        raise refused
    return locks


def _guard_dependants(plan: Plan, locks: list[DataLock]) -> None:
    """Refuse a change that would re-derive a frozen or locked form of the subject."""
    for dependant in plan.forms[1:]:
        refused = refusal(locks, LockPlace.of(dependant.ref))
        if refused is not None:
            raise DataLocked(
                f"This change recalculates {dependant.form.title}, which is frozen or locked: "
                f"{refused}"
            )


# -- 4. evaluate ------------------------------------------------------------------------------


def _evaluate(
    session: Session,
    study: Study,
    subject: Subject | None,
    change: SubjectChange,
    loaded: Loaded,
    now: datetime,
    by: Author,
    locks: list[DataLock],
) -> Plan:
    if isinstance(change, NewSubject):
        assert loaded.site is not None
        return Plan(None, new_subject=plan_new_subject(session, study, loaded.site, change))
    assert subject is not None
    match change:
        case VisitDate():
            today = reads.site_today(session, subject, now)
            visit = plan_visit_date(loaded.event, change, today)
            results = check_visit_date(session, study, subject, visit, today) if visit else []
            return Plan(subject, visit=visit, check_results=results)
        case SubjectStatus():
            assert loaded.transition is not None
            today = reads.site_today(session, subject, now)
            status = plan_status(session, study, subject, loaded.transition, change, today)
            return Plan(subject, status=status)
        case ImportedStatus():
            return Plan(subject, status=plan_imported_status(study, subject, change))
        case (
            QueryOpen() | QueryChange() | ImportedQuery() | DataLockSet() | DataLockRelease()
            | VerifyForm() | WithdrawVerification() | Sign()
        ):  # fmt: skip
            return plan_review(
                session, study, subject, change, by.actor, importing=by.importing,
                query=loaded.query, stored=loaded.stored, locks=locks, now=now,
            )  # fmt: skip
        case FormValues() | FormNotDone():
            assert loaded.form is not None
            return _evaluate_form(
                session, study, subject, change, loaded.form, loaded.stored, now, by.importing
            )


def _evaluate_form(
    session: Session,
    study: Study,
    subject: Subject,
    change: FormValues | FormNotDone,
    form: FormDef,
    stored: StoredForm | None,
    now: datetime,
    importing: bool,
) -> Plan:
    """The form's plan, then the subject's other forms it feeds and the requirements of its
    reached statuses that read it; a requirement that must not be undone refuses, and so does
    an infusion the escalation does not allow that day (not for an import:
    `app.escalation.write_gates`)."""
    values = SubjectValues(session, study, subject)
    today = reads.site_today(session, subject, now)
    if isinstance(change, FormValues):
        limits = DateLimits(study.info.earliest_date, today)
        plan, evaluation = plan_values(study, change.ref, form, stored, change.edit, values, limits)
        if not evaluation.is_valid:
            return Plan(subject, forms=[plan], evaluation=evaluation)
        gate = None if importing else infusion_refusal(session, study, subject, plan, evaluation)
        if gate is not None:
            evaluation.errors[gate[0]] = gate[1]
            return Plan(subject, forms=[plan], evaluation=evaluation)
        values.update(change.ref, form, evaluation.values)
    else:
        plan, evaluation = plan_not_done(study, change.ref, form, stored, change), None
    plans = [plan, *rederive(session, study, subject, values, [plan])]
    check = check_requirements(session, study, subject, values, plans)
    if check.refusals:
        raise StatusRefused(" ".join(check.refusals))
    results = check_form_changes(session, study, subject, plans, today)
    if evaluation is not None:
        for result in refusals(results, plan):
            key = (result.group_oid, result.group_repeat, result.item_name)
            if key not in evaluation.errors:
                evaluation.errors[key] = result.check.message
                evaluation.failed_checks[key] = result.check.id
    return Plan(
        subject, forms=plans, alerts=check.alerts, evaluation=evaluation, check_results=results
    )

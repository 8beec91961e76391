"""JSON API under /api/v1: the same services, checks, audit, reasons and conflicts as the pages.

Authentication is a personal API token (`Authorization: Bearer <token>`); the caller has the
roles and sites of the token's owner. Errors are `{"detail": ..., "errors": [{field, message}]}`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from app import audit
from app.access import Access, Permission, studies_of
from app.crf import form_changes, reads, write
from app.crf.casebook import build_casebook
from app.crf.changes import (
    MAX_REASON_LENGTH,
    Change,
    FormEdit,
    FormRef,
    FormValues,
    NewSubject,
    NotFound,
    Refused,
    SaveConflict,
    SubjectStatus,
    VisitDate,
)
from app.crf.engine import FieldKey, FormEvaluation, RawRows, Rows
from app.db import unit_of_work
from app.models import Site, Subject, utcnow
from app.studies import StudyRegistry
from app.study.loader import Study, find_item
from app.study.model import FormDef
from app.web.deps import CallerDep, SessionDep, StudyDep, requires
from app.web.formview import FIELD_NAME, field_name
from app.web.pages import invalid_page_request

API_ROOT = "/api/v1"
STUDY_PREFIX = API_ROOT + "/studies/{study_oid}"
"""Every path about a study's data names the study: /api/v1/studies/ZM001/subjects/..."""
router = APIRouter(prefix=STUDY_PREFIX, tags=["v1"])
accounts = APIRouter(prefix=API_ROOT, tags=["v1"])
SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
Repeat = Annotated[int, PathParam(ge=1, le=9999)]
ViewerDep = Annotated[Access, requires(Permission.VIEW_SUBJECTS)]
FORM_PATH = (
    "/subjects/{subject_id}/events/{event_oid}/{event_repeat}/forms/{form_oid}/{form_repeat}"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FieldMessage(BaseModel):
    field: str = Field(description="`<item group OID>:<repeat>:<item name>`, or a body path")
    message: str


class ErrorOut(BaseModel):
    detail: str
    errors: list[FieldMessage] = []


class SubjectOut(BaseModel):
    id: int
    subject_key: str = Field(description="screening number, site-prefixed")
    site_oid: str
    status: str
    status_date: date | None
    dose_level: str | None
    phase: str | None
    created_at: datetime


class SubjectCreate(Strict):
    site_id: int = Field(ge=1, le=2**31)


class FormStatusOut(BaseModel):
    form_oid: str
    title: str
    repeat: int
    status: str
    mandatory: bool


class VisitOut(BaseModel):
    event_oid: str
    name: str
    repeat: int
    visitnum: float | None
    target: date | None = Field(description="target date, once its anchor date is known")
    earliest: date | None
    latest: date | None
    visit_date: date | None
    state: str = Field(
        description="against the visit window: upcoming, due, overdue, in_window, out_of_window, "
        "or empty (untimed, or its anchor date not known yet); says nothing of its forms"
    )
    study_day: int | None = Field(
        description="days from the study's study-day anchor (ZM001: the infusion day, D0 = 0)"
    )
    forms: list[FormStatusOut]


class VisitDateIn(Strict):
    visit_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)


class CasebookOut(SubjectOut):
    visits: list[VisitOut]


Values = dict[str, dict[str, dict[str, str | list[str] | None]]]
"""Item values by group OID, repeat key (as text) and item name."""


class FormOut(BaseModel):
    event_oid: str
    event_repeat: int
    form_oid: str
    form_repeat: int
    status: str
    version: int = Field(description="send it back when saving: the optimistic lock")
    values: Values
    flags: list[FieldMessage] = Field(description="values outside their expected range")
    missing: list[str] = Field(description="required answers still empty")


class FieldReason(Strict):
    field: str = Field(pattern=FIELD_NAME.pattern, max_length=120)
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class FormSave(Strict):
    version: int = Field(ge=0, le=2**31, description="the version the values were based on")
    values: Values = Field(
        description="rows to save: each row given replaces the stored row (items left out of "
        "it are cleared); rows not given keep their values"
    )
    complete: bool = False
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    reasons: list[FieldReason] = Field(default=[], max_length=2000)
    remove_rows: list[str] = Field(
        default=[],
        max_length=2000,
        description="rows of repeating groups to delete, as `<item group OID>:<repeat>`",
    )


class SaveOut(BaseModel):
    version: int
    status: str
    changed: int = Field(description="values changed, derived ones included")


class AuditOut(BaseModel):
    occurred_at: datetime
    username: str
    action: str
    old_value: str | None
    new_value: str | None
    reason: str | None
    source: str


class ApiError(Exception):
    """An API refusal with field-level errors."""

    def __init__(self, status: int, detail: str, errors: list[FieldMessage] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.errors = errors or []


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422)
}


def install(app: FastAPI) -> None:
    app.include_router(router, responses=ERRORS)
    app.include_router(accounts, responses=ERRORS)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        body = ErrorOut(detail=error.detail, errors=error.errors)
        return JSONResponse(body.model_dump(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
        if not request.url.path.startswith(API_ROOT + "/"):
            return await invalid_page_request(request, error)
        errors = [
            FieldMessage(field=".".join(str(p) for p in e["loc"]), message=e["msg"])
            for e in error.errors()
        ]
        body = ErrorOut(detail="The request is not valid.", errors=errors)
        return JSONResponse(body.model_dump(), status_code=422)


def _subject_out(session: Session, subject: Subject) -> dict[str, Any]:
    site = session.get(Site, subject.site_id)
    return {**subject.model_dump(), "site_oid": site.oid if site else ""}


class StudyOut(BaseModel):
    oid: str = Field(description="the study's OID, the path segment of its API")
    name: str
    metadata_version: str = Field(description="ODM MetaDataVersion OID it runs, e.g. MDV.ZM001.1")


@accounts.get("/studies", response_model=list[StudyOut])
def list_studies(
    request: Request,
    caller: CallerDep,
    _access: Annotated[Access, requires(Permission.MANAGE_OWN_TOKENS, in_study=False)],
) -> list[dict[str, Any]]:
    """The studies the token's owner works in; each has its API under /api/v1/studies/{oid}."""
    registry: StudyRegistry = request.app.state.studies
    studies = [registry.by_id[i] for i in studies_of(caller.assignments, registry.by_id)]
    return [
        {"oid": s.info.oid, "name": s.info.name, "metadata_version": s.mdv_oid} for s in studies
    ]


@router.get("/subjects", response_model=list[SubjectOut])
def list_subjects(session: SessionDep, access: ViewerDep) -> list[dict[str, Any]]:
    """Subjects at the caller's sites (all sites for study-wide roles)."""
    return [
        {**subject.model_dump(), "site_oid": site.oid}
        for subject, site in reads.list_subjects(session, access)
    ]


@router.post("/subjects", response_model=SubjectOut, status_code=201)
def create_subject(
    session: SessionDep,
    study: StudyDep,
    access: Annotated[Access, requires(Permission.REGISTER_SUBJECT)],
    body: SubjectCreate,
) -> dict[str, Any]:
    """Register a subject at a site; the screening number is assigned by the system."""
    outcome = _apply(session, study, access, NewSubject(body.site_id))
    return _subject_out(session, outcome.subject)


@router.get("/subjects/{subject_id}", response_model=CasebookOut)
def read_subject(
    session: SessionDep, study: StudyDep, access: ViewerDep, subject_id: SubjectId
) -> dict[str, Any]:
    """A subject with its casebook: visits and the status of each form."""
    subject = reads.get_subject(session, access, subject_id)
    casebook = build_casebook(session, study, subject, reads.site_today(session, subject, utcnow()))
    visits = [
        {**visit.__dict__, "forms": [form.__dict__ for form in visit.forms]}
        for visit in casebook.visits
    ]
    return {**_subject_out(session, subject), "visits": visits}


class StatusChange(Strict):
    to: str = Field(max_length=30, description="a status code of the study's subject path")
    effective: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="ISO date of the change")
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    dose_level: str | None = Field(default=None, max_length=10)
    phase: str | None = Field(default=None, max_length=20)


@router.post("/subjects/{subject_id}/status", response_model=SubjectOut)
def change_status(
    session: SessionDep,
    study: StudyDep,
    access: Annotated[Access, requires(Permission.CHANGE_STATUS)],
    subject_id: SubjectId,
    body: StatusChange,
) -> dict[str, Any]:
    """Move a subject along the study's path (enrolment assigns dose level and phase); refused
    with every unmet requirement named when the casebook does not support the change."""
    change = SubjectStatus(
        subject_id, body.to, _iso_date(body.effective, "body.effective"), body.reason,
        body.dose_level, body.phase,
    )  # fmt: skip
    return _subject_out(session, _apply(session, study, access, change).subject)


@router.put(
    "/subjects/{subject_id}/events/{event_oid}/{event_repeat}",
    response_model=VisitOut,
    dependencies=[requires(Permission.ENTER_DATA)],
)
def date_visit(
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    body: VisitDateIn,
) -> dict[str, Any]:
    """Record or correct a visit's date (a correction needs a reason); dating the next repeat
    of an unscheduled or long-term follow-up visit adds it."""
    visit_date = _iso_date(body.visit_date, "body.visit_date")
    change = VisitDate(subject_id, event_oid, event_repeat, visit_date, body.reason)
    subject = _apply(session, study, access, change).subject
    casebook = build_casebook(session, study, subject, reads.site_today(session, subject, utcnow()))
    visit = next(v for v in casebook.visits if (v.event_oid, v.repeat) == (event_oid, event_repeat))
    return {**visit.__dict__, "forms": [form.__dict__ for form in visit.forms]}


def _iso_date(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise ApiError(
            422, "The request is not valid.", [FieldMessage(field=field, message=str(error))]
        ) from error


def _apply(session: Session, study: Study, access: Access, change: Change) -> write.Outcome:
    """Make a change through the write path as one unit of work; a refusal is a 422."""
    author = write.Author(access, audit.Actor(access.user, "api"))
    try:
        with unit_of_work(session):
            return write.apply(session, study, change, by=author, now=utcnow())
    except SaveConflict as conflict:
        changes = [FieldMessage(field=label, message=f"saved: {saved!r}, yours: {yours!r}")
                   for label, saved, yours in conflict.changes]  # fmt: skip
        raise ApiError(409, str(conflict), changes) from conflict
    except Refused as refusal:
        raise ApiError(422, str(refusal)) from refusal


async def form_ref(
    event_oid: str, event_repeat: Repeat, form_oid: str, form_repeat: Repeat
) -> FormRef:
    return FormRef(event_oid, event_repeat, form_oid, form_repeat)


FormRefDep = Annotated[FormRef, Depends(form_ref)]


def _field_messages(messages: dict[FieldKey, str]) -> list[FieldMessage]:
    return [
        FieldMessage(field=field_name(*key), message=text) for key, text in sorted(messages.items())
    ]


def _values_out(rows: Rows) -> Values:
    return {
        group: {str(repeat): dict(values) for repeat, values in sorted(repeats.items())}
        for group, repeats in rows.items()
    }


@router.get(FORM_PATH, response_model=FormOut)
def read_form(
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    ref: FormRefDep,
) -> dict[str, Any]:
    """A form's stored values (derived ones included), status, version, flags and gaps."""
    subject, form, stored = reads.open_subject_form(session, study, access, subject_id, ref)
    rows = stored.rows if stored else {}
    unchanged = FormEdit(rows={}, base_version=stored.form_data.version if stored else 0)
    evaluation = form_changes.preview(session, study, subject, form, stored, unchanged, utcnow())
    return {
        **ref.__dict__,
        "status": stored.form_data.status if stored else "not_started",
        "version": stored.form_data.version if stored else 0,
        "values": _values_out(rows),
        "flags": _field_messages(evaluation.flags),
        "missing": sorted(field_name(*key) for key in evaluation.missing),
    }


def _rows_in(values: Values) -> RawRows:
    rows: dict[str, dict[int, dict[str, str | list[str] | None]]] = {}
    errors = []
    for group, repeats in values.items():
        for repeat, items in repeats.items():
            if not re.fullmatch(r"[1-9]\d{0,3}", repeat):
                errors.append(
                    FieldMessage(
                        field=f"values.{group}.{repeat}", message="repeat keys are 1 to 9999"
                    )
                )
                continue
            rows.setdefault(group, {})[int(repeat)] = items
    if errors:
        raise ApiError(422, "The request is not valid.", errors)
    return rows


def _reasons_in(reasons: list[FieldReason]) -> dict[FieldKey, str]:
    parsed: dict[FieldKey, str] = {}
    for entry in reasons:
        match = FIELD_NAME.match(entry.field)
        assert match is not None  # the pydantic pattern guarantees it
        parsed[(match["group"], int(match["repeat"]), match["item"])] = entry.reason
    return parsed


def _removals_in(form: FormDef, names: list[str]) -> frozenset[tuple[str, int]]:
    groups = {group.oid for group in form.item_groups if group.repeating}
    removed = set()
    errors = []
    for name in names:
        group_oid, _, repeat = name.rpartition(":")
        if group_oid in groups and re.fullmatch(r"[1-9]\d{0,3}", repeat):
            removed.add((group_oid, int(repeat)))
        else:
            errors.append(
                FieldMessage(
                    field=f"remove_rows.{name}",
                    message=f"not a row of a repeating group of {form.oid} (<group OID>:<repeat>)",
                )
            )
    if errors:
        raise ApiError(422, "The request is not valid.", errors)
    return frozenset(removed)


def _unknown_fields(study: Study, form_oid: str, values: Values) -> list[FieldMessage]:
    form = study.form(form_oid)
    groups = {group.oid: {item.name for item in group.items} for group in form.item_groups}
    errors = []
    for group, repeats in values.items():
        for repeat, items in repeats.items():
            for name in items:
                if name not in groups.get(group, set()):
                    errors.append(
                        FieldMessage(
                            field=f"{group}:{repeat}:{name}", message=f"{form_oid} has no such item"
                        )
                    )
    return errors


@router.put(FORM_PATH, response_model=SaveOut, dependencies=[requires(Permission.ENTER_DATA)])
def save_form(
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    ref: FormRefDep,
    body: FormSave,
) -> dict[str, Any]:
    """Save a form: type, range and required checks, derivations, audit, reasons for change on
    complete forms, and 409 when `version` is not the stored version. Each row given in
    `values` replaces the stored row; rows not given keep their values; `remove_rows` deletes
    rows. A complete form stays complete."""
    form = study.forms.get(ref.form_oid)
    if form is None:
        raise NotFound(f"form {ref.form_oid}")
    unknown = _unknown_fields(study, ref.form_oid, body.values)
    if unknown:
        raise ApiError(422, "The form has no such items.", unknown)
    edit = FormEdit(
        rows=_rows_in(body.values), base_version=body.version, complete=body.complete,
        reason=body.reason, reasons=_reasons_in(body.reasons),
        removed=_removals_in(form, body.remove_rows),
    )  # fmt: skip
    outcome = _apply(session, study, access, FormValues(subject_id, ref, edit))
    if not outcome.saved:
        raise ApiError(
            422, "Nothing was saved: some values need correcting.", _errors(outcome.evaluation)
        )
    return {"version": outcome.version, "status": outcome.form.status, "changed": outcome.changed}


def _errors(evaluation: FormEvaluation) -> list[FieldMessage]:
    return _field_messages(evaluation.errors)


@router.get(
    FORM_PATH + "/items/{group_oid}/{group_repeat}/{item_name}/audit",
    response_model=list[AuditOut],
    dependencies=[requires(Permission.VIEW_AUDIT)],
)
def read_item_audit(
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    ref: FormRefDep,
    group_oid: str,
    group_repeat: Repeat,
    item_name: str,
) -> list[Any]:
    """An item's audit trail, oldest first: who, when, old value, new value, reason, source."""
    subject, form, _stored = reads.open_subject_form(session, study, access, subject_id, ref)
    found = find_item(form, item_name)
    if found is None or found[0].oid != group_oid:
        raise NotFound(item_name)
    return list(
        reads.item_audit_trail(session, subject, ref, group_oid, group_repeat, found[1].oid)
    )

"""Browser pages: login, subject list, casebook and form entry. Routes are thin: they read the
request, call a service, and render a template."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import audit, auth
from app.access import Access, AccessDenied, Permission, access_of, role_label, studies_of
from app.crf import form_changes, reads, write
from app.crf import status as subject_status
from app.crf.casebook import build_casebook
from app.crf.changes import (
    FormEdit,
    FormNotDone,
    FormRef,
    FormValues,
    NewSubject,
    NotFound,
    Refused,
    SaveConflict,
    SubjectStatus,
    VisitDate,
)
from app.crf.engine import FormEvaluation, RawRows
from app.crf.retired_forms import retired_values
from app.crf.values import InvalidValue, calendar_date, shown_text
from app.db import unit_of_work
from app.escalation.write_gates import open_dose_levels
from app.models import Site, Subject, pk, utcnow
from app.review.locks import LockPlace, active_locks, covers
from app.review.query_reads import open_counts_by_form, open_counts_by_subject
from app.review.sdv_reads import casebook_sdv, form_sdv, sees_verification
from app.studies import StudyRegistry
from app.study.loader import Study, find_item
from app.study.model import FormDef, ItemDef
from app.web.deps import (
    SESSION_COOKIE,
    CallerDep,
    LoginRequired,
    SessionDep,
    SettingsDep,
    StudyChoiceRequired,
    StudyDep,
    get_caller,
    page_access,
    requires,
)
from app.web.escalation_context import subject_window
from app.web.formview import error_summary, field_reasons, form_view, removed_rows, submitted_rows
from app.web.menu import home, menu
from app.web.query_context import form_query_context
from app.web.signature_context import signature_context

SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
Repeat = Annotated[int, PathParam(ge=1, le=9999)]
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["role_label"] = role_label


def _shown(value: str | None, item: ItemDef) -> str | None:
    """Jinja filter `value|shown(item)`: a stored value as pages show it (ISO dates)."""
    return shown_text(item, value)


TEMPLATES.env.filters["shown"] = _shown
MAX_FORM_FIELDS = 5000
FORM_PATH = (
    "/subjects/{subject_id}/events/{event_oid}/{event_repeat}/forms/{form_oid}/{form_repeat}"
)

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
ViewerDep = Annotated[Access, requires(Permission.VIEW_SUBJECTS)]


def install(app: FastAPI) -> None:
    """Register the page routes and the handlers that turn service errors into pages."""
    app.include_router(router)

    @app.exception_handler(StudyChoiceRequired)
    async def _choose_study(_request: Request, _exc: StudyChoiceRequired) -> Response:
        return RedirectResponse("/studies", status_code=303)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.url.path.startswith("/api/"):
            message = "Authentication required: send a personal API token as 'Bearer <token>'."
            return JSONResponse({"detail": message}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, _exc: NotFound) -> Response:
        return await _error(request, 404, "Not found", NOT_FOUND)

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> Response:
        return await _error(request, 403, "Not allowed", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown paths and methods: the API's JSON as FastAPI gives it, the app's page else."""
        if request.url.path.startswith("/api/"):
            return await http_exception_handler(request, exc)
        if exc.status_code == 404:
            return await _error(request, 404, "Not found", NOT_FOUND)
        title = HTTPStatus(exc.status_code).phrase
        return await _error(request, exc.status_code, title, str(exc.detail))


NOT_FOUND = "There is no such page, or you do not have access to it."
"""Said alike of a page that does not exist and of another site's subject."""


async def invalid_page_request(request: Request, error: RequestValidationError) -> Response:
    """A page request whose path or form fields do not parse. A malformed id in the path
    (`/subjects/abc`) names no page: the same "Not found" as an id that does not exist."""
    if any(problem["loc"][:1] == ("path",) for problem in error.errors()):
        return await _error(request, 404, "Not found", NOT_FOUND)
    details = [
        f"{problem['loc'][-1]}: {problem['msg']}" if problem["loc"] else problem["msg"]
        for problem in error.errors()
    ]
    return await _error(request, 422, "Not valid", "; ".join(details))


async def _error(request: Request, status: int, title: str, message: str) -> Response:
    """The same refusal as JSON for the API and as a page, with the user's menu, for the
    browser."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=status)
    access = await page_access(request)
    context = {"title": title, "message": message, "access": access}
    return render(request, "message.html", context, status)


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    """A page from `template`; its header has the menu of the logged-in user (the context's
    `access`, else the one the request's dependencies found)."""
    access: Access | None = context.get("access") or getattr(request.state, "access", None)
    context = {
        "study": getattr(request.state, "study", None),
        "csrftoken": request.scope["csrftoken"](),
        "user": access.user if access else None,
        "user_roles": ", ".join(sorted(role_label(role) for role in access.roles))
        if access
        else "",
        "menu": menu(access) if access else [],
        "home": home(access) if access else "/login",
        **context,
    }
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


# -- login ------------------------------------------------------------------------------------


@router.get("/")
def root(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Each user's start page in the study they work in: the first place of their menu;
    choosing a study first when they work in several."""
    try:
        caller = get_caller(request, session, settings)
    except LoginRequired:
        return RedirectResponse("/login", status_code=303)
    if caller.study_id is None:
        return RedirectResponse("/studies", status_code=303)
    access = access_of(caller.user, caller.assignments, caller.study_id)
    start = home(access)
    if start is None:
        message = "Your account has no role in this study yet: ask an administrator for one."
        return render(request, "message.html", {"title": "No role", "message": message}, 403)
    return RedirectResponse(start, status_code=303)


StudyOid = Annotated[str, PathParam(max_length=40, pattern=r"^[A-Za-z][A-Za-z0-9._\-]*$")]


@router.get("/studies")
def studies_page(
    request: Request,
    caller: CallerDep,
    access: Annotated[Access, requires(Permission.MANAGE_OWN_TOKENS, in_study=False)],
) -> Response:
    """The studies the user works in, to choose the one to work in now."""
    registry: StudyRegistry = request.app.state.studies
    mine = [registry.by_id[i] for i in studies_of(caller.assignments, registry.by_id)]
    context = {"studies": mine, "chosen": caller.study_id, "access": access}
    return render(request, "studies.html", context)


@router.post("/studies/{study_oid}")
def study_choose(
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    study_oid: StudyOid,
    _access: Annotated[Access, requires(Permission.MANAGE_OWN_TOKENS, in_study=False)],
) -> Response:
    """Work in `study_oid` from now on, in this browser session."""
    registry: StudyRegistry = request.app.state.studies
    study = registry.by_oid.get(study_oid)
    if study is None or study.id not in studies_of(caller.assignments, registry.by_id):
        raise NotFound(f"study {study_oid}")
    if caller.login_session is None:  # an API token chooses its study in the path
        raise NotFound(f"study {study_oid}")
    with unit_of_work(session):
        auth.choose_study(
            session, login_session=caller.login_session, study_id=study.id, now=utcnow()
        )
    return RedirectResponse("/", status_code=303)


@router.get("/login")
def login_page(request: Request) -> Response:
    return render(request, "login.html", {"error": None, "username": ""})


@router.post("/login")
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=80)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        token = auth.login(
            session, username=username, password=password, source="web", now=utcnow()
        )
    except auth.LoginFailed as failure:
        session.commit()  # a failed attempt is stored too: its audit record and the counter
        return render(request, "login.html", {"error": str(failure), "username": username}, 401)
    session.commit()
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=settings.secure_cookies
    )
    return response


@router.post("/logout")
def logout_submit(request: Request, session: SessionDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with unit_of_work(session):
            auth.logout(session, token=token, now=utcnow())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# -- subjects ---------------------------------------------------------------------------------


def _register_sites(session: Session, access: Access) -> list[Site]:
    """The study's sites where the user may register a subject, by number."""
    if not access.can(Permission.REGISTER_SUBJECT):
        return []
    register_sites = access.site_ids(Permission.REGISTER_SUBJECT)
    return [
        site
        for site in session.exec(
            select(Site).where(Site.study_id == access.study_id).order_by(col(Site.number))
        )
        if register_sites is None or site.id in register_sites
    ]


SubjectFilterParam = Annotated[str | None, Query(max_length=30)]


@router.get("/subjects")
def subjects_page(
    request: Request,
    session: SessionDep,
    access: ViewerDep,
    site: SubjectFilterParam = None,
    status: SubjectFilterParam = None,
    dose: SubjectFilterParam = None,
) -> Response:
    """The subjects the user sees; `site` (number), `status` (code) and `dose` (dose level,
    or "none" for none assigned) filter it (the dashboard's links)."""
    where = reads.SubjectFilter(
        site or None, status or None, ("" if dose == "none" else dose) if dose else None
    )
    subjects = reads.list_subjects(session, access, where)
    sites = _register_sites(session, access)
    filters = {"site": site, "status": status, "dose": dose}
    context = {
        "subjects": subjects, "sites": sites, "access": access,
        "open_queries": open_counts_by_subject(session, access),
        "filters": {name: value for name, value in filters.items() if value},
    }  # fmt: skip
    return render(request, "subjects.html", context)


@router.get("/subjects/register")
def register_confirm_page(
    request: Request,
    session: SessionDep,
    access: Annotated[Access, requires(Permission.REGISTER_SUBJECT)],
    site_id: Annotated[int, Query(ge=1, le=2**31)],
) -> Response:
    """The step before registering: names the site and says that a permanent subject key is
    created there, since a subject once registered stays in the study's records. Works
    without JavaScript; the POST it leads to is unchanged, for scripts and the API alike."""
    site = next((s for s in _register_sites(session, access) if s.id == site_id), None)
    if site is None:
        raise NotFound(f"site {site_id}")
    return render(request, "register_subject.html", {"site": site, "access": access})


@router.post("/subjects")
def register_submit(
    session: SessionDep,
    study: StudyDep,
    access: Annotated[Access, requires(Permission.REGISTER_SUBJECT)],
    site_id: Annotated[int, Form(ge=1, le=2**31)],
) -> Response:
    with unit_of_work(session):
        outcome = write.apply(
            session, study, NewSubject(site_id), by=write.Author(access, audit.Actor(access.user)),
            now=utcnow(),
        )  # fmt: skip
    return RedirectResponse(f"/subjects/{outcome.subject.id}", status_code=303)


@router.get("/subjects/{subject_id}")
def casebook_page(
    request: Request, session: SessionDep, study: StudyDep, access: ViewerDep, subject_id: SubjectId
) -> Response:
    subject = reads.get_subject(session, access, subject_id)
    return _casebook(request, session, study, access, subject)


def _casebook(
    request: Request,
    session: Session,
    study: Study,
    access: Access,
    subject: Subject,
    status_error: str | None = None,
    status: int = 200,
) -> Response:
    today = reads.site_today(session, subject, utcnow())
    context = {
        "subject": subject,
        "subject_status": study.subject_path.status(subject.status),
        "casebook": build_casebook(session, study, subject, today),
        "options": subject_status.transition_options(session, study, access, subject),
        "alerts": subject_status.open_alerts(session, subject),
        "retired": retired_values(session, study, subject),
        "dose_levels": open_dose_levels(session, study, today),
        "dlt_window": subject_window(session, study, subject, today),
        "phases": study.info.phases,
        "today": today.isoformat(),
        "status_error": status_error,
        "access": access,
        "open_queries": open_counts_by_form(session, subject),
        "locks": active_locks(session, subject),
        "can_lock": access.can(Permission.LOCK_DATA, subject.site_id),
        "sdv_marks": casebook_sdv(session, study, subject)
        if sees_verification(access, subject.site_id)
        else {},
        **signature_context(request, session, study, access, subject),
    }
    return render(request, "casebook.html", context, status)


def _apply_from_casebook(
    request: Request,
    session: Session,
    study: Study,
    access: Access,
    subject: Subject,
    change: VisitDate | SubjectStatus,
) -> Response | None:
    """Make a change asked for on the casebook; the casebook with the reason when refused."""
    try:
        with unit_of_work(session):
            author = write.Author(access, audit.Actor(access.user))
            write.apply(session, study, change, by=author, now=utcnow())
    except Refused as refusal:
        return _casebook(request, session, study, access, subject, str(refusal), 422)
    return None


@router.post(
    "/subjects/{subject_id}/events/{event_oid}/{event_repeat}/date",
    dependencies=[requires(Permission.ENTER_DATA)],
)
def visit_date_submit(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    visit_date: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Date a visit; dating the next repeat of a repeating visit adds it (unscheduled, LTFU)."""
    subject = reads.get_subject(session, access, subject_id)
    day = _typed_date(visit_date, "Visit date")
    if isinstance(day, str):
        return _casebook(request, session, study, access, subject, day, 422)
    change = VisitDate(subject_id, event_oid, event_repeat, day, reason.strip() or None)
    refused = _apply_from_casebook(request, session, study, access, subject, change)
    if refused is not None:
        return refused
    anchor = f"visit-{event_oid.replace('.', '_')}" + (
        f"-{event_repeat}" if event_repeat > 1 else ""
    )
    return RedirectResponse(f"/subjects/{subject.id}#{anchor}", status_code=303)


@router.post("/subjects/{subject_id}/status")
def status_submit(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: Annotated[Access, requires(Permission.CHANGE_STATUS)],
    subject_id: SubjectId,
    to: Annotated[str, Form(max_length=30)],
    effective: Annotated[str, Form(max_length=40)],
    reason: Annotated[str, Form()] = "",
    dose_level: Annotated[str | None, Form(max_length=10)] = None,
    phase: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    subject = reads.get_subject(session, access, subject_id)
    day = _typed_date(effective, "Date")
    if isinstance(day, str):
        return _casebook(request, session, study, access, subject, day, 422)
    change = SubjectStatus(
        subject_id, to, day, reason.strip() or None, dose_level or None, phase or None
    )
    refused = _apply_from_casebook(request, session, study, access, subject, change)
    if refused is not None:
        return refused
    return RedirectResponse(f"/subjects/{subject.id}", status_code=303)


def _typed_date(text: str, label: str) -> date | str:
    """The date typed as YYYY-MM-DD in a casebook field, or the message saying why it is not
    one (an impossible date such as 2025-02-30 included), as an eCRF date item says it."""
    try:
        return calendar_date(text.strip())
    except InvalidValue as error:
        return f"{label} {error}"


# -- forms ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenForm:
    """A subject's form at a visit, resolved for the current user (NotFound when not theirs,
    or not in the casebook)."""

    study: Study
    access: Access
    subject: Subject
    form: FormDef
    stored: reads.StoredForm | None
    ref: FormRef
    session: Session
    """The request's session (the page also shows the form's queries)."""


def open_form(
    session: SessionDep,
    study: StudyDep,
    access: ViewerDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
) -> OpenForm:
    ref = FormRef(event_oid, event_repeat, form_oid, form_repeat)
    subject, form, stored = reads.open_subject_form(session, study, access, subject_id, ref)
    return OpenForm(study, access, subject, form, stored, ref, session)


OpenFormDep = Annotated[OpenForm, Depends(open_form)]


@dataclass(frozen=True)
class Submission:
    """What the browser posted for a form: the edit, which button, and row additions/removals."""

    edit: FormEdit
    action: str
    not_done_reason: str | None
    add_row: str | None
    remove_row: str | None


async def read_submission(request: Request, page: OpenFormDep) -> Submission:
    data = await request.form(max_fields=MAX_FORM_FIELDS)
    try:
        base_version = int(str(data.get("_version")))
    except ValueError:
        base_version = -1  # never a stored version: the save becomes a conflict
    action = str(data.get("_action") or "save")
    edit = FormEdit(
        rows=submitted_rows(page.form, data),
        base_version=base_version,
        complete=action == "complete",
        reason=_text(data.get("_reason")),
        reasons=field_reasons(data),
        removed=removed_rows(page.form, data),
    )
    return Submission(
        edit, action, _text(data.get("_not_done_reason")),
        _text(data.get("_add_row")), _text(data.get("_remove_row")),
    )  # fmt: skip


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


SubmissionDep = Annotated[Submission, Depends(read_submission)]


def with_row_edits(page: OpenForm, edit: FormEdit, submission: Submission) -> FormEdit:
    """The edit with a row added to, or removed from, a repeating group (a preview).

    A new row takes a repeat key never used in this form, so audit trails never mix rows; a
    removed row is named in `removed`, so that the save that follows deletes it.
    """
    rows = {group: dict(repeats) for group, repeats in edit.rows.items()}
    removed = set(edit.removed)
    if submission.remove_row:
        group_oid, _, repeat = submission.remove_row.rpartition(":")
        if repeat.isdigit():
            rows.get(group_oid, {}).pop(int(repeat), None)
            removed.add((group_oid, int(repeat)))
    group = next(
        (g for g in page.form.item_groups if g.repeating and g.oid == submission.add_row), None
    )
    if group is not None:
        stored = page.stored.rows.get(group.oid, {}) if page.stored else {}
        used = set(rows.get(group.oid, {})) | set(stored) | {len(group.rows)}
        used |= {repeat for oid, repeat in removed if oid == group.oid}
        rows.setdefault(group.oid, {})[max(used) + 1] = {}
    return replace(edit, rows=rows, removed=frozenset(removed))


def _shown_rows(page: OpenForm, edit: FormEdit) -> RawRows:
    """What the page shows: the stored rows, each submitted row as typed, removed rows gone."""
    return form_changes.merged_rows(page.stored.rows if page.stored else {}, edit)


def render_form(
    request: Request,
    page: OpenForm,
    edit: FormEdit,
    evaluation: FormEvaluation,
    *,
    status: int = 200,
    conflict: SaveConflict | None = None,
    form_errors: list[str] | None = None,
    show_missing: bool = False,
) -> Response:
    """The form page (or only its body, for htmx) with values as given and their evaluation."""
    stored = page.stored
    visit = page.study.visit(page.ref.event_oid)
    saved_status = stored.form_data.status if stored else "not_started"
    place = LockPlace.of(page.ref)
    locks_here = [lock for lock in active_locks(page.session, page.subject) if covers(lock, place)]
    context = {
        "subject": page.subject,
        "form": page.form,
        "event_name": visit.name if visit else "Logs",
        "groups": form_view(
            page.study, page.form, _shown_rows(page, edit), evaluation, show_missing
        ),
        "summary": error_summary(page.form, evaluation, show_missing),
        "removed": sorted(edit.removed),
        "retired": _retired_values(page),
        "version": edit.base_version,
        "reason": edit.reason or "",  # kept when the live preview re-renders the form
        "status": saved_status,
        "not_done_reason": stored.form_data.not_done_reason if stored else None,
        "has_history": stored is not None,
        "saved": request.query_params.get("saved") == "1",
        "unsaved": status != 200,  # a refused save: what the user typed is not stored
        "conflict": conflict,
        "form_errors": form_errors or [],
        "can_edit": page.access.can(Permission.ENTER_DATA, page.subject.site_id) and not locks_here,
        "access": page.access,
        "action": str(request.url.path).removesuffix("/preview"),
        "ref": page.ref,
        "lock_place": LockPlace.of(page.ref),
        "locks_here": locks_here,
        "can_lock": page.access.can(Permission.LOCK_DATA, page.subject.site_id),
        "can_verify": page.access.can(Permission.VERIFY_DATA, page.subject.site_id),
        "sdv": form_sdv(page.session, page.study, page.subject, page.ref, saved_status)
        if page.access.can(Permission.VERIFY_DATA, page.subject.site_id)
        else None,
        **form_query_context(page.session, page.access, page.subject, page.form, page.ref),
    }
    template = "_form_body.html" if request.headers.get("hx-request") else "form.html"
    if template == "form.html":  # the panel is outside the form body htmx re-renders
        context |= signature_context(
            request, page.session, page.study, page.access, page.subject, page.ref
        )
    return render(request, template, context, status)


def _retired_values(page: OpenForm) -> list[tuple[str, int, str, str | None]]:
    """(group label, row, item label, value) of each stored value of an item the current
    definition no longer has."""
    if page.stored is None:
        return []
    retired = page.study.retired
    removed = retired.groups.get(page.form.oid, ())
    groups = {group.oid: group.label for group in (*page.form.item_groups, *removed)}
    labels = {oid: item.label for oid, item in retired.items_by_oid().items()}
    return [
        (groups.get(group_oid, group_oid), repeat, labels.get(item_oid, item_oid), value)
        for (group_oid, repeat, item_oid), value in sorted(page.stored.retired.items())
    ]


def _stored_edit(page: OpenForm) -> FormEdit:
    """An edit that changes nothing: the form as stored, at its stored version."""
    return FormEdit(rows={}, base_version=page.stored.form_data.version if page.stored else 0)


def _preview(session: Session, page: OpenForm, edit: FormEdit) -> FormEvaluation:
    return form_changes.preview(
        session, page.study, page.subject, page.form, page.stored, edit, utcnow()
    )


@router.get(FORM_PATH)
def form_page(request: Request, session: SessionDep, page: OpenFormDep) -> Response:
    edit = _stored_edit(page)
    return render_form(request, page, edit, _preview(session, page, edit))


@router.post(FORM_PATH, dependencies=[requires(Permission.ENTER_DATA)])
def form_submit(
    request: Request, session: SessionDep, page: OpenFormDep, submission: SubmissionDep
) -> Response:
    edit = submission.edit
    author = write.Author(page.access, audit.Actor(page.access.user))
    change: FormValues | FormNotDone = FormValues(pk(page.subject), page.ref, edit)
    if submission.action == "not_done":
        change = FormNotDone(
            pk(page.subject), page.ref, edit.base_version, submission.not_done_reason
        )
    try:
        with unit_of_work(session):
            outcome = write.apply(session, page.study, change, by=author, now=utcnow())
    except (SaveConflict, Refused) as refusal:
        conflict = refusal if isinstance(refusal, SaveConflict) else None
        return render_form(
            request, page, edit, _preview(session, page, edit),
            status=409 if conflict else 422, conflict=conflict,
            form_errors=None if conflict else [str(refusal)],
        )  # fmt: skip
    if not outcome.saved:
        return render_form(
            request, page, edit, outcome.evaluation, status=422,
            show_missing=edit.complete or outcome.form.old_status == "complete",
        )  # fmt: skip
    return _saved(request)


def _saved(request: Request) -> Response:
    target = request.url.path + "?saved=1"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


@router.post(FORM_PATH + "/preview")
def form_preview(
    request: Request, session: SessionDep, page: OpenFormDep, submission: SubmissionDep
) -> Response:
    """Re-render the form body as typed (htmx): derived values, show-if, field errors, and
    rows added or removed."""
    edit = with_row_edits(page, submission.edit, submission)
    return render_form(request, page, edit, _preview(session, page, edit))


@router.get(
    FORM_PATH + "/audit/{group_oid}/{group_repeat}/{item_name}",
    dependencies=[requires(Permission.VIEW_AUDIT)],
)
def item_audit_page(
    request: Request,
    session: SessionDep,
    page: OpenFormDep,
    group_oid: str,
    group_repeat: Repeat,
    item_name: str,
) -> Response:
    """Every recorded change of one item: old and new value, who, when, why."""
    found = find_item(page.form, item_name)
    if found is None or found[0].oid != group_oid:
        raise NotFound(item_name)
    trail = reads.item_audit_trail(
        session, page.subject, page.ref, group_oid, group_repeat, found[1].oid
    )
    context = {
        "subject": page.subject, "form": page.form, "item": found[1], "trail": trail,
        "group_repeat": group_repeat, "access": page.access,
        "back": str(request.url.path).split("/audit/")[0],
    }  # fmt: skip
    template = "_audit_trail.html" if request.headers.get("hx-request") else "audit_trail.html"
    return render(request, template, context)


# -- personal API tokens ----------------------------------------------------------------------

TokenOwnerDep = Annotated[Access, requires(Permission.MANAGE_OWN_TOKENS, in_study=False)]


@router.get("/account/tokens")
def tokens_page(request: Request, session: SessionDep, access: TokenOwnerDep) -> Response:
    tokens = auth.list_api_tokens(session, access.user)
    return render(request, "tokens.html", {"tokens": tokens, "access": access, "secret": None})


@router.post("/account/tokens")
def token_create(
    request: Request,
    session: SessionDep,
    access: TokenOwnerDep,
    name: Annotated[str, Form(max_length=80)] = "",
) -> Response:
    try:
        with unit_of_work(session):
            token, secret = auth.create_api_token(
                session, user=access.user, name=name, now=utcnow()
            )
    except ValueError as error:
        tokens = auth.list_api_tokens(session, access.user)
        context = {"tokens": tokens, "access": access, "secret": None, "error": str(error)}
        return render(request, "tokens.html", context, 422)
    tokens = auth.list_api_tokens(session, access.user)
    context = {"tokens": tokens, "access": access, "secret": secret, "created": token}
    return render(request, "tokens.html", context)


@router.post("/account/tokens/{token_id}/revoke")
def token_revoke(
    session: SessionDep, access: TokenOwnerDep, token_id: Annotated[int, PathParam(ge=1, le=2**62)]
) -> Response:
    try:
        with unit_of_work(session):
            auth.revoke_api_token(session, user=access.user, token_id=token_id, now=utcnow())
    except LookupError as error:
        raise NotFound(str(error)) from error
    return RedirectResponse("/account/tokens", status_code=303)

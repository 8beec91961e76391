"""Browser pages: login, subject list, casebook and form entry. Routes are thin: they read the
request, call a service, and render a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import col, select

from app import audit, auth
from app.access import AccessDenied, Permission
from app.crf import service
from app.crf.casebook import build_casebook
from app.models import Site, utcnow
from app.web.deps import SESSION_COOKIE, AccessDep, LoginRequired, SessionDep, SettingsDep, StudyDep
from app.web.formview import form_view, submitted_rows

SubjectId = Annotated[int, PathParam(ge=1, le=2**62)]
Repeat = Annotated[int, PathParam(ge=1, le=9999)]
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
MAX_FORM_BYTES = 512 * 1024


def install(app: FastAPI) -> None:
    """Register the page routes and the handlers that turn service errors into pages."""
    for route in ROUTES:
        app.add_api_route(**route)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(service.NotFound)
    async def _not_found(request: Request, _exc: service.NotFound) -> Response:
        return render(
            request,
            "message.html",
            {
                "title": "Not found",
                "message": "There is no such page, or you do not have access to it.",
            },
            404,
        )

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> Response:
        return render(request, "message.html", {"title": "Not allowed", "message": str(exc)}, 403)


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    context = {
        "study": request.app.state.study,
        "csrftoken": request.scope["csrftoken"](),
        **context,
    }
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def root(request: Request) -> Response:
    return RedirectResponse("/subjects", status_code=303)


def login_page(request: Request) -> Response:
    return render(request, "login.html", {"error": None, "username": ""})


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
        return render(request, "login.html", {"error": str(failure), "username": username}, 401)
    response = RedirectResponse("/subjects", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        max_age=None,
    )
    return response


def logout_submit(request: Request, session: SessionDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.logout(session, token=token, now=utcnow())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def subjects_page(request: Request, session: SessionDep, access: AccessDep) -> Response:
    access.require(Permission.VIEW_SUBJECTS)
    subjects = service.list_subjects(session, access)
    register_sites = access.site_ids(Permission.REGISTER_SUBJECT)
    sites = (
        [
            site
            for site in session.exec(_all_sites())
            if register_sites is None or site.id in register_sites
        ]
        if access.can(Permission.REGISTER_SUBJECT)
        else []
    )
    return render(
        request, "subjects.html", {"subjects": subjects, "sites": sites, "access": access}
    )


def _all_sites() -> Any:
    return select(Site).order_by(col(Site.number))


def register_submit(
    request: Request,
    session: SessionDep,
    access: AccessDep,
    site_id: Annotated[int, Form(ge=1, le=2**31)],
) -> Response:
    subject = service.register_subject(
        session, access=access, site_id=site_id, actor=audit.Actor(access.user)
    )
    return RedirectResponse(f"/subjects/{subject.id}", status_code=303)


def casebook_page(
    request: Request, session: SessionDep, study: StudyDep, access: AccessDep, subject_id: SubjectId
) -> Response:
    subject = service.get_subject(session, access, subject_id)
    casebook = build_casebook(session, study, subject)
    return render(
        request, "casebook.html", {"subject": subject, "casebook": casebook, "access": access}
    )


def _form_context(
    session: Any,
    study: Any,
    access: Any,
    subject_id: int,
    event_oid: str,
    event_repeat: int,
    form_oid: str,
    form_repeat: int,
) -> tuple[Any, Any, Any]:
    subject = service.get_subject(session, access, subject_id)
    form = service.check_form_scheduled(study, event_oid, form_oid)
    stored = service.load_form(
        session,
        subject,
        form,
        event_oid=event_oid,
        event_repeat=event_repeat,
        form_repeat=form_repeat,
    )
    return subject, form, stored


FORM_PATH = (
    "/subjects/{subject_id}/events/{event_oid}/{event_repeat}/forms/{form_oid}/{form_repeat}"
)


def form_page(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: AccessDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
) -> Response:
    subject, form, stored = _form_context(
        session, study, access, subject_id, event_oid, event_repeat, form_oid, form_repeat
    )
    values = stored.rows if stored else {}
    evaluation = service.evaluate_for_subject(session, study, subject, form, values)
    return _render_form(
        request,
        study,
        subject,
        form,
        event_oid,
        event_repeat,
        form_repeat,
        values,
        evaluation,
        stored,
        access,
        saved=request.query_params.get("saved") == "1",
    )


def _render_form(
    request: Request,
    study: Any,
    subject: Any,
    form: Any,
    event_oid: str,
    event_repeat: int,
    form_repeat: int,
    values: Any,
    evaluation: Any,
    stored: Any,
    access: Any,
    *,
    saved: bool = False,
    status: int = 200,
    conflict: service.SaveConflict | None = None,
    form_errors: list[str] | None = None,
    show_missing: bool = False,
    version: int | None = None,
) -> Response:
    visit = study.visit(event_oid)
    context = {
        "subject": subject,
        "form": form,
        "event_oid": event_oid,
        "event_repeat": event_repeat,
        "form_repeat": form_repeat,
        "event_name": visit.name if visit else "Logs",
        "groups": form_view(study, form, values, evaluation, show_missing),
        "version": version if version is not None else (stored.form_data.version if stored else 0),
        "status": stored.form_data.status if stored else "not_started",
        "saved": saved,
        "conflict": conflict,
        "form_errors": form_errors or [],
        "can_edit": access.can(Permission.ENTER_DATA, subject.site_id),
        "access": access,
        "action": request.url.path.removesuffix("/preview"),
    }
    template = "_form_body.html" if request.headers.get("hx-request") else "form.html"
    return render(request, template, context, status)


async def form_submit(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: AccessDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
) -> Response:
    subject, form, stored = _form_context(
        session, study, access, subject_id, event_oid, event_repeat, form_oid, form_repeat
    )
    data = await request.form(max_fields=5000)
    submitted = submitted_rows(form, data)
    base_version = _int(data.get("_version"))
    try:
        outcome = service.save_form(
            session,
            study,
            access=access,
            subject=subject,
            event_oid=event_oid,
            event_repeat=event_repeat,
            form_oid=form_oid,
            form_repeat=form_repeat,
            submitted=submitted,
            base_version=base_version,
            complete=data.get("_action") == "complete",
            reason=str(data.get("_reason") or "") or None,
            actor=audit.Actor(access.user),
            now=utcnow(),
        )
    except service.SaveConflict as conflict:
        evaluation = service.evaluate_for_subject(session, study, subject, form, submitted)
        return _render_form(
            request,
            study,
            subject,
            form,
            event_oid,
            event_repeat,
            form_repeat,
            submitted,
            evaluation,
            stored,
            access,
            status=409,
            conflict=conflict,
            version=base_version,
        )
    if not outcome.saved:
        return _render_form(
            request,
            study,
            subject,
            form,
            event_oid,
            event_repeat,
            form_repeat,
            submitted,
            outcome.evaluation,
            stored,
            access,
            status=422,
            form_errors=outcome.form_errors,
            show_missing=True,
            version=base_version,
        )
    target = request.url.path + "?saved=1"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def form_preview(
    request: Request,
    session: SessionDep,
    study: StudyDep,
    access: AccessDep,
    subject_id: SubjectId,
    event_oid: str,
    event_repeat: Repeat,
    form_oid: str,
    form_repeat: Repeat,
) -> Response:
    """Re-render the form body as typed: derived values, show-if and field errors (htmx)."""
    subject, form, stored = _form_context(
        session, study, access, subject_id, event_oid, event_repeat, form_oid, form_repeat
    )
    data = await request.form(max_fields=5000)
    submitted = submitted_rows(form, data)
    evaluation = service.evaluate_for_subject(session, study, subject, form, submitted)
    return _render_form(
        request,
        study,
        subject,
        form,
        event_oid,
        event_repeat,
        form_repeat,
        submitted,
        evaluation,
        stored,
        access,
        version=_int(data.get("_version")),
    )


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return -1


HTML = HTMLResponse
ROUTES: list[dict[str, Any]] = [
    {
        "path": "/",
        "endpoint": root,
        "methods": ["GET"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/login",
        "endpoint": login_page,
        "methods": ["GET"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/login",
        "endpoint": login_submit,
        "methods": ["POST"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/logout",
        "endpoint": logout_submit,
        "methods": ["POST"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/subjects",
        "endpoint": subjects_page,
        "methods": ["GET"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/subjects",
        "endpoint": register_submit,
        "methods": ["POST"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": "/subjects/{subject_id}",
        "endpoint": casebook_page,
        "methods": ["GET"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": FORM_PATH,
        "endpoint": form_page,
        "methods": ["GET"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": FORM_PATH,
        "endpoint": form_submit,
        "methods": ["POST"],
        "response_class": HTML,
        "include_in_schema": False,
    },
    {
        "path": FORM_PATH + "/preview",
        "endpoint": form_preview,
        "methods": ["POST"],
        "response_class": HTML,
        "include_in_schema": False,
    },
]

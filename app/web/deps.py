"""Request dependencies: database session, settings, the caller, the study the request is
about, and the caller's access in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlmodel import Session

from app import auth, logs
from app.access import Access, Assignment, Permission, access_of, assignments_of, studies_of
from app.config import Settings
from app.crf.changes import NotFound
from app.models import LoginSession, UserAccount, pk, utcnow
from app.studies import StudyRegistry
from app.study.loader import Study

SESSION_COOKIE = "trialdesk_session"


class LoginRequired(Exception):
    """No live session: pages redirect to the login page."""


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, closed as soon as the route function returns (before a response
    streams), and opened only when the database can take another transaction.

    Requests beyond that capacity wait here, in the event loop. Were they to wait for a
    connection in worker threads instead, enough of them would occupy every thread, and the
    requests holding the connections could never get a thread to finish in. Async also skips
    two worker-thread hops: opening a Session does no I/O, and closing it just returns the
    connection to the pool."""
    gate: anyio.Semaphore = request.app.state.transaction_gate
    async with gate:
        with Session(request.app.state.engine, expire_on_commit=False) as session:
            yield session


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


class StudyChoiceRequired(Exception):
    """A page of a study was asked for before the user chose one of their studies."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, with every role they hold, and the study the request is about: the
    study in the API path, or the one chosen in the browser session (None until chosen)."""

    user: UserAccount
    assignments: list[Assignment]
    study_id: int | None
    login_session: LoginSession | None


def get_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    """The caller from a personal API token (`Authorization: Bearer`), else from the browser
    session cookie. Raises LoginRequired when neither identifies a live user. A browser
    session of a user with one study works in it without choosing."""
    now = utcnow()
    registry: StudyRegistry = request.app.state.studies
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    caller = None
    if scheme.lower() == "bearer" and secret:
        found = auth.token_user(session, secret=secret.strip(), now=now)
        if found is not None:
            oid = request.path_params.get("study_oid")
            study = registry.by_oid.get(oid) if isinstance(oid, str) else None
            caller = Caller(found[0], found[1], study.id if study else None, None)
    elif token := request.cookies.get(SESSION_COOKIE):
        idle = timedelta(minutes=settings.session_idle_minutes)
        found_session = auth.session_user(session, token=token, idle=idle, now=now)
        if found_session is not None:
            user, login_session = found_session
            assignments = assignments_of(session, user)
            mine = studies_of(assignments, registry.by_id)
            chosen = login_session.study_id if login_session.study_id in mine else None
            if chosen is None and len(mine) == 1:  # one study: no need to choose it (or write)
                chosen = mine[0]
            caller = Caller(user, assignments, chosen, login_session)
    if session.new or session.dirty:  # a refreshed idle timer, an ended session, a token's use
        session.commit()
    if caller is None:
        raise LoginRequired
    # The account as read now, kept out of the session: a route's rolled-back change must not
    # expire what the page (an error page too) still shows of who is logged in.
    session.expunge(caller.user)
    logs.note_user(pk(caller.user))
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def page_access(request: Request) -> Access | None:
    """The logged-in user's access for an error page: as the route's dependencies found it, or,
    for a path no route answers, from the session cookie; None when nobody is logged in."""
    known: Access | None = getattr(request.state, "access", None)
    if known is not None or SESSION_COOKIE not in request.cookies:
        return known

    def load() -> Access | None:
        with Session(request.app.state.engine, expire_on_commit=False) as session:
            try:
                caller = get_caller(request, session, request.app.state.settings)
            except LoginRequired:
                return None
            return access_of(caller.user, caller.assignments, caller.study_id)

    async with request.app.state.transaction_gate:
        return await anyio.to_thread.run_sync(load)


# Dependencies that do no I/O are `async`: FastAPI runs sync dependencies in a worker thread,
# and the hop costs more than the work.


async def get_access(request: Request, caller: CallerDep) -> Access:
    """The caller's access in the study of the request. A page asked for before a study is
    chosen raises StudyChoiceRequired; an API path naming a study the caller does not work in
    (or one that does not exist) is not found."""
    registry: StudyRegistry = request.app.state.studies
    if caller.study_id is None or caller.study_id not in studies_of(
        caller.assignments, registry.by_id
    ):
        if request.url.path.startswith("/api/"):
            raise NotFound(f"study {request.path_params.get('study_oid')}")
        raise StudyChoiceRequired
    request.state.study = registry.by_id[caller.study_id]  # pages render with it
    access = access_of(caller.user, caller.assignments, caller.study_id)
    request.state.access = access  # for the page header, also of an error page (see below)
    return access


AccessDep = Annotated[Access, Depends(get_access)]


async def get_account_access(caller: CallerDep) -> Access:
    """The caller's access outside any study, with the roles of all their studies: for what
    belongs to the account (choosing a study, personal API tokens)."""
    return access_of(caller.user, [(r, None, s) for r, _, s in caller.assignments], None)


AccountDep = Annotated[Access, Depends(get_account_access)]


async def get_study(request: Request, access: AccessDep) -> Study:
    """The study of the request (the caller works in it)."""
    registry: StudyRegistry = request.app.state.studies
    assert access.study_id is not None
    return registry.by_id[access.study_id]


StudyDep = Annotated[Study, Depends(get_study)]


class PermissionCheck:
    """A route dependency that demands a permission in the request's study (at some site;
    site checks follow in the services). Routes declare it, so a test can walk the route
    table and find each rule."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, access: AccessDep) -> Access:
        access.require(self.permission)
        return access


class AccountPermissionCheck(PermissionCheck):
    """A PermissionCheck for what belongs to the account, whichever study (or none) is chosen."""

    async def __call__(self, access: AccountDep) -> Access:
        access.require(self.permission)
        return access


def requires(permission: Permission, *, in_study: bool = True) -> Any:
    """`Depends` on a PermissionCheck: use as a route parameter type or in `dependencies=`;
    `in_study=False` for account routes that need no chosen study."""
    return Depends((PermissionCheck if in_study else AccountPermissionCheck)(permission))

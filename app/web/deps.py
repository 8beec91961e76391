"""Request dependencies: database session, settings, study, and the logged-in user's access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlmodel import Session

from app import auth, logs
from app.access import Access, Permission, load_access
from app.config import Settings
from app.models import pk, utcnow
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


async def get_study(request: Request) -> Study:
    study: Study = request.app.state.study
    return study


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StudyDep = Annotated[Study, Depends(get_study)]


def get_access(request: Request, session: SessionDep, settings: SettingsDep) -> Access:
    """The caller's access: from a personal API token (`Authorization: Bearer`), else from the
    browser session cookie. Raises LoginRequired when neither identifies a live user."""
    now = utcnow()
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret:
        access = auth.token_access(session, secret=secret.strip(), now=now)
    elif token := request.cookies.get(SESSION_COOKIE):
        idle = timedelta(minutes=settings.session_idle_minutes)
        user = auth.session_user(session, token=token, idle=idle, now=now)
        access = None if user is None else load_access(session, user)
    else:
        access = None
    if session.new or session.dirty:  # a refreshed idle timer, an ended session, a token's use
        session.commit()
    if access is None:
        raise LoginRequired
    logs.note_user(pk(access.user))
    return access


AccessDep = Annotated[Access, Depends(get_access)]


# Dependencies that do no I/O are `async`: FastAPI runs sync dependencies in a worker thread,
# and the hop costs more than the work.


class PermissionCheck:
    """A route dependency that demands a permission (at some site; site checks follow in the
    services). Routes declare it, so a test can walk the route table and find each rule."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, access: AccessDep) -> Access:
        access.require(self.permission)
        return access


def requires(permission: Permission) -> Any:
    """`Depends` on a PermissionCheck: use as a route parameter type or in `dependencies=`."""
    return Depends(PermissionCheck(permission))

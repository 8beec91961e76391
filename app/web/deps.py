"""Request dependencies: database session, settings, study, and the logged-in user's access."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from app import auth
from app.access import Access, load_access
from app.config import Settings
from app.models import utcnow
from app.study.loader import Study

SESSION_COOKIE = "trialdesk_session"


class LoginRequired(Exception):
    """No live session: pages redirect to the login page."""


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_study(request: Request) -> Study:
    study: Study = request.app.state.study
    return study


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
StudyDep = Annotated[Study, Depends(get_study)]


def get_access(request: Request, session: SessionDep, settings: SettingsDep) -> Access:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired
    user = auth.session_user(
        session,
        token=token,
        idle=timedelta(minutes=settings.session_idle_minutes),
        now=utcnow(),
    )
    if user is None:
        raise LoginRequired
    return load_access(session, user)


AccessDep = Annotated[Access, Depends(get_access)]

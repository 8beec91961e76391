"""The ASGI application: `create_app()` builds it from settings (uvicorn runs it with --factory).

Startup refuses a broken study definition (StudyDefinitionError, listing every problem) and a
database that is not migrated (UnmigratedDatabase, saying what to run).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asgi_csrf import asgi_csrf
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.config import Settings, get_settings
from app.db import make_engine, pending_migrations
from app.study.loader import Study, load_study
from app.web import pages

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "web" / "static"


class UnmigratedDatabase(RuntimeError):
    """The database schema is not at the latest migration."""


def create_app(settings: Settings | None = None, study: Study | None = None) -> Any:
    """Build the app: FastAPI wrapped in CSRF protection. Raises before serving anything
    when the study definition has problems or the database is not migrated."""
    settings = settings or get_settings()
    study = study or load_study(settings.study_dir)
    engine = make_engine(settings.database_url)
    problem = pending_migrations(engine)
    if problem:
        engine.dispose()
        raise UnmigratedDatabase(problem)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="TrialDesk", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.study = study
    app.state.engine = engine
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    pages.install(app)
    return asgi_csrf(
        app,
        signing_secret=settings.secret_key.get_secret_value(),
        always_protect={"/login"},
        cookie_secure=settings.secure_cookies,
        cookie_samesite="Strict",
    )

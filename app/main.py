"""The ASGI application: `create_app()` builds it from settings (uvicorn runs it with --factory).

Startup refuses a broken study definition or SDTM mappings (StudyDefinitionError, listing every
problem) and a database that is not migrated (UnmigratedDatabase, saying what to run).
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from asgi_csrf import asgi_csrf
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import export_jobs, import_jobs, logs
from app.checks import run_jobs
from app.config import Settings, get_settings
from app.db import make_engine, pending_migrations, transaction_capacity
from app.models import utcnow
from app.studies import DefinitionChanged, bind_studies, load_studies
from app.study.loader import Study
from app.web import (
    admin_pages,
    api,
    check_pages,
    dashboard_pages,
    docs,
    escalation_api,
    escalation_pages,
    exports,
    health,
    import_pages,
    lock_pages,
    pages,
    query_api,
    query_pages,
    sdv_pages,
    signature_pages,
    tracing,
)

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "web" / "static"


class UnmigratedDatabase(RuntimeError):
    """The database schema is not at the latest migration."""


@dataclass(frozen=True)
class ServedApp:
    """What uvicorn serves: the FastAPI app behind tracing, CSRF and body-size protection.
    `fastapi` exposes the inner app (its routes, state) to tests and tools."""

    asgi: ASGIApp
    fastapi: FastAPI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)


def create_app(settings: Settings | None = None, studies: list[Study] | None = None) -> ServedApp:
    """Build the app: FastAPI behind request tracing, CSRF protection and the body limit;
    configures logging. Raises before serving anything when a study definition or its SDTM
    mappings have problems (StudyDefinitionError, the report `trialdesk study check` prints),
    the database is not migrated (UnmigratedDatabase), or a definition changed over a study
    holding data (DefinitionChanged). Given `studies` are taken as checked with their mappings
    (tests check them once for many servers)."""
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    studies = studies or load_studies(settings, with_mappings=True)
    engine = make_engine(settings.database_url)
    problem = pending_migrations(engine, settings.migrations_dir)
    if problem:
        engine.dispose()
        raise UnmigratedDatabase(problem)
    try:
        registry = bind_studies(engine, studies, now=utcnow())
    except DefinitionChanged:
        engine.dispose()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with Session(engine) as session:
            export_jobs.fail_interrupted(session)
            import_jobs.fail_interrupted(session)
            run_jobs.fail_interrupted(session)
        # What startup built (the study definition, the routes, compiled templates: about
        # 200,000 objects) lives as long as the server: leave it out of the garbage collector's
        # full passes, which took 130 ms each and showed as the slowest requests.
        gc.freeze()
        yield
        gc.unfreeze()
        with Session(engine) as session:
            export_jobs.fail_own_running(session)
            import_jobs.fail_own_running(session)
            run_jobs.fail_own_running(session)
        engine.dispose()

    app = FastAPI(
        title="TrialDesk", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.studies = registry
    app.state.engine = engine
    app.state.transaction_gate = anyio.Semaphore(transaction_capacity(engine), fast_acquire=True)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    tracing.install(app)
    app.include_router(health.router)
    pages.install(app)
    docs.install(app)
    api.install(app)
    app.include_router(admin_pages.router)
    app.include_router(exports.pages)
    app.include_router(exports.api, responses=api.ERRORS)
    app.include_router(import_pages.router)
    app.include_router(query_pages.router)
    app.include_router(lock_pages.router)
    app.include_router(check_pages.router)
    app.include_router(sdv_pages.router)
    app.include_router(dashboard_pages.router)
    app.include_router(escalation_pages.router)
    app.include_router(escalation_api.router)
    app.include_router(signature_pages.router)
    app.include_router(query_api.router)
    protected = tracing.trace_requests(
        limit_body_size(
            asgi_csrf(
                app,
                signing_secret=settings.secret_key.get_secret_value(),
                always_protect={"/login"},
                cookie_secure=settings.secure_cookies,
                cookie_samesite="Strict",
            ),
            larger={import_pages.UPLOAD_PATH: import_pages.MAX_UPLOAD_BYTES},
        )
    )
    return ServedApp(protected, app)


MAX_BODY_BYTES = 2 * 1024 * 1024
"""Largest request body accepted; a whole lab panel form is a few kilobytes."""


def limit_body_size(
    app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: Mapping[str, int] | None = None
) -> ASGIApp:
    """Refuse bodies over `limit` bytes (or the limit `larger` gives a path, for uploads) with
    413 before anything reads them into memory."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        allowed = (larger or {}).get(scope["path"], limit)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > allowed:
            await _too_large(send, allowed)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > allowed:
                raise RequestTooLarge
            return message

        try:
            await app(scope, counted, send)
        except RequestTooLarge:
            await _too_large(send, allowed)

    return guarded


class RequestTooLarge(Exception):
    """A streamed body grew past the limit."""


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body is larger than {limit // 1024} KiB."}).encode()
    await send({
        "type": "http.response.start", "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})

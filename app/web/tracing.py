"""Each request's id, its access line, and what a user sees of a server error.

`trace_requests` wraps the whole served app (outside CSRF and the body limit, so that their
refusals are traced too). It gives every request a new id, never the client's: an id in our
logs is one we made. The id goes into the `X-Request-ID` response header and, through
`app.logs`, into every line logged while the request is served. Each request ends with one
access line: method, path (never the query string), status, duration and user id.

An exception that no route handles is logged once, with its traceback, and the user gets a
page (JSON `{"detail", "request_id"}` under `/api/`) that names the id to quote to support.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("app.access")

# Its own environment, not the pages' renderer: the error page needs nothing that could itself
# be broken (the study, the CSRF token, the database).
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(),
)


def server_error_response(path: str, request_id: str) -> Response:
    """The 500 a user gets: JSON under /api/, else a page; both name the request id."""
    if path.startswith("/api/"):
        detail = f"The server could not complete this request. Quote {request_id} to support."
        return JSONResponse({"detail": detail, "request_id": request_id}, status_code=500)
    page = _templates.get_template("server_error.html").render(request_id=request_id)
    return HTMLResponse(page, status_code=500)


def install(app: FastAPI) -> None:
    """Answer unhandled exceptions inside FastAPI with the error page. Starlette re-raises them
    after answering, and `trace_requests` logs them."""

    async def server_error(request: Request, _exc: Exception) -> Response:
        return server_error_response(request.url.path, logs.current_request_id())

    app.add_exception_handler(Exception, server_error)


def trace_requests(app: ASGIApp) -> ASGIApp:
    """Wrap `app`: a request id per HTTP request, its header, an access line, and unhandled
    exceptions logged with their traceback and answered with the error page (unless the
    response had begun). Exceptions are not re-raised: uvicorn would log them a second time,
    without the request id."""

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with logs.request_context() as context:
            await _traced(app, context, scope, receive, send)

    return traced


async def _traced(
    app: ASGIApp, context: logs.RequestContext, scope: Scope, receive: Receive, send: Send
) -> None:
    started = time.perf_counter()
    status: int | None = None
    header = (b"x-request-id", context.request_id.encode())
    path = _printable(scope["path"])

    async def send_with_id(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message = {**message, "headers": [*message.get("headers", []), header]}
        await send(message)

    try:
        await app(scope, receive, send_with_id)
    except Exception:
        logger.exception("unhandled error in %s %s", scope["method"], path)
        if status is None:
            response = server_error_response(scope["path"], context.request_id)
            await response(scope, receive, send_with_id)
    finally:
        duration = 1000 * (time.perf_counter() - started)
        access_logger.info(
            "%s %s %s %.0f ms user=%s",
            scope["method"],
            path,
            status or "-",
            duration,
            context.user_id or "-",
        )


def _printable(path: str) -> str:
    """The path with control and non-ASCII characters escaped: a decoded %0A must not start a
    forged log line."""
    return path.encode("unicode_escape").decode("ascii")

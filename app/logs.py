"""Logging: one configuration for TrialDesk, uvicorn and the libraries, and the id of the
request being served in every line logged while it is.

`configure(level)` sends every record to stderr in one format; `create_app` and
`trialdesk serve` call it, and uvicorn runs with `log_config=None`, so its loggers propagate
here. `app.web.tracing` gives each request its `RequestContext`.

Log lines never hold personal data: no request bodies, form values, passwords, cookies,
tokens or query strings; a user appears by account id only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
NO_REQUEST = "-"
"""The request id of lines logged outside a request (startup, export jobs' threads)."""


@dataclass
class RequestContext:
    """What log lines say about the request being served. Mutable: the code that finds out
    who the user is fills `user_id` in, also from a worker thread, which sees this same
    object through its copy of the context."""

    request_id: str
    user_id: int | None = None


_current: ContextVar[RequestContext | None] = ContextVar("trialdesk_request", default=None)


def new_request_id() -> str:
    """16 random hex digits: unique among a server's requests, short enough to read out."""
    return secrets.token_hex(8)


@contextmanager
def request_context() -> Iterator[RequestContext]:
    """The context of a new request, with a new id, for the code run within."""
    context = RequestContext(new_request_id())
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_request_id() -> str:
    """The id of the request being served, or NO_REQUEST."""
    context = _current.get()
    return context.request_id if context else NO_REQUEST


def note_user(user_id: int) -> None:
    """Record who the current request is from (for its access line), if in a request."""
    context = _current.get()
    if context is not None:
        context.user_id = user_id


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on each record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure` installs, told apart so that configuring again replaces it."""


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record at `level` or above to `stream` (default stderr) in FORMAT,
    with the request id. Replaces the handler of an earlier call and leaves other handlers
    (a test runner's) in place."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
        handler.close()
    handler = _Handler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Every start checks the schema's revision, and alembic logs two lines of its context each
    # time; its warnings still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)

"""Server errors and logs as support meets them: the user is shown a request id to quote, the
log has the same id with the traceback, and nothing personal is logged."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import Request
from sqlalchemy import Engine
from sqlmodel import Session

from app import logs
from app.demo import DEMO_PASSWORD
from app.study.loader import Study
from app.web.deps import AccessDep
from tests import factories
from tests.conftest import LiveServer, csrf_token, logged_in_client

SECRET = "Hunter-2026-secret"
NAME = "Jane Doe-Smith"


async def failing_route(request: Request, access: AccessDep) -> None:
    """Reads what was submitted, then fails as a bug would."""
    await request.form()
    raise RuntimeError("the test route failed")


@pytest.fixture
def failing_server(
    demo_engine: Engine, database_url: str, zm001: Study
) -> Iterator[tuple[LiveServer, io.StringIO]]:
    """A live server with a route that raises (for this test only), logging into a buffer
    through the app's own logging configuration."""
    server = LiveServer(database_url, zm001)
    for path in ("/test-failure", "/api/v1/studies/{study_oid}/test-failure"):
        server.app.fastapi.add_api_route(path, failing_route, methods=["GET", "POST"])
    log = io.StringIO()
    logs.configure("INFO", stream=log)
    with server:
        yield server, log
    logs.configure("INFO")


def server_records(log: io.StringIO, last: str) -> list[str]:
    """The server's log records (each line with the lines that continue it, a traceback), once
    it has logged `last`: it writes a request's access line after the response has gone. The
    test's own HTTP client logs in this process too; its records are left out."""
    deadline = time.monotonic() + 10
    while last not in log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d )", log.getvalue())
    return [record for record in records if " INFO httpx " not in record]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_server_error_names_the_request_id_that_the_log_has_with_the_traceback(
    failing_server: tuple[LiveServer, io.StringIO],
) -> None:
    server, log = failing_server
    browser = logged_in_client(server, "sponsor")
    engine = server.app.fastapi.state.engine
    with Session(engine) as session:
        token = factories.api_token(session, "sponsor", "logs")
        sponsor_id = factories.user(session, "sponsor").id
    page = browser.post(
        "/test-failure?name=" + NAME.replace(" ", "+"),
        data={"csrftoken": csrf_token(browser, "/subjects"), "password": SECRET, "AETERM": NAME},
        headers={"X-Request-ID": "chosen-by-the-client"},
    )
    assert page.status_code == 500
    request_id = page.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert page.headers["content-type"].startswith("text/html")
    assert "Server error" in page.text
    assert "If you contact support, quote this reference:" in " ".join(page.text.split())
    assert f'<code class="request-id">{request_id}</code>' in page.text

    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    answer = api.get("/api/v1/studies/ZM001/test-failure")
    assert answer.status_code == 500
    api_id = answer.headers["x-request-id"]
    assert answer.json() == {
        "detail": f"The server could not complete this request. Quote {api_id} to support.",
        "request_id": api_id,
    }

    records = server_records(log, last=f"[{api_id}] GET /api/v1/studies/ZM001/test-failure 500")
    requests = (
        (request_id, "POST", "/test-failure"),
        (api_id, "GET", "/api/v1/studies/ZM001/test-failure"),
    )
    for rid, method, path in requests:
        error, access = [record for record in records if f"[{rid}]" in record]
        assert f"ERROR app.web.tracing [{rid}] unhandled error in {method} {path}\n" in error
        assert "Traceback (most recent call last)" in error
        assert error.rstrip().endswith("RuntimeError: the test route failed")
        assert re.search(
            rf"INFO app.access \[{rid}\] {method} {path} 500 \d+ ms user={sponsor_id}$", access
        )
    text = "\n".join(records)
    assert "chosen-by-the-client" not in text and "chosen-by-the-client" not in page.text
    assert "POST /login 303" in text  # the login is logged, not what was typed into it
    cookies = [cookie.value for cookie in browser.cookies.jar]
    assert len(cookies) == 2  # the session's and the CSRF token's
    for private in (SECRET, DEMO_PASSWORD, "Jane", "Doe", token, "sponsor", *cookies):
        assert private not in text

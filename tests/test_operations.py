"""Operating TrialDesk: `GET /health` answers for a container's HEALTHCHECK."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from tests.conftest import LiveServer


def test_health_answers_without_a_login_while_the_database_does(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_health_is_503_while_the_database_does_not_answer(
    live_server: LiveServer, demo_engine: Engine, database_url: str
) -> None:
    database = Path(str(make_url(database_url).database))
    for engine in (live_server.app.fastapi.state.engine, demo_engine):
        engine.dispose()  # closes the connections, so the next one opens the file anew
    healthy = database.read_bytes()
    database.write_bytes(b"this is not a database file " * 200)
    try:
        response = httpx.get(f"{live_server.url}/health", timeout=10)
    finally:
        live_server.app.fastapi.state.engine.dispose()
        database.write_bytes(healthy)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "detail": "the database does not answer"}
    assert httpx.get(f"{live_server.url}/health", timeout=10).status_code == 200

"""Shared fixtures: the ZM001 study, a migrated database on SQLite and on PostgreSQL, demo
accounts, and a real uvicorn server on 127.0.0.1 for HTTP and browser tests (the browser's own
fixtures are in tests/browser/conftest.py)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Self, cast

import httpx
import lxml.html
import pytest
import uvicorn
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from app import auth
from app.config import Settings, StudyFolders
from app.db import make_engine, upgrade
from app.demo import DEMO_PASSWORD, load_demo
from app.main import create_app
from app.models import utcnow
from app.studies import bind_studies
from app.study.loader import Study, load_study
from tests import write_path_guard

REPO = Path(__file__).resolve().parents[1]
FORMS = REPO / "forms"
EXPORTS = REPO / "exports"
ODM_SCHEMA = REPO / "app" / "schemas" / "odm-1.3.2" / "ODM1-3-2.xsd"
ARTIFACTS = REPO / "test-artifacts"
BACKENDS = ["sqlite", "postgresql"]


auth.use_cheap_password_hashing()  # tests only: hashing a demo account's password costs ms


@pytest.fixture(scope="session", autouse=True)
def only_the_write_path_writes_clinical_data() -> Iterator[None]:
    """Every test runs with the guard of `tests.write_path_guard` in place."""
    write_path_guard.install()
    yield
    write_path_guard.uninstall()


@pytest.fixture(scope="session")
def zm001() -> Study:
    """ZM001 as every test database holds it: bound to study row 1, released as version 1."""
    return bound_zm001()


@functools.cache
def bound_zm001() -> Study:
    return replace(load_study(FORMS), sdtm_dir=EXPORTS, db_id=1, version=1)


def _postgres_admin_url() -> str | None:
    return os.environ.get("TRIALDESK_TEST_POSTGRES_URL")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database holding ZM001 and nothing else: a SQLite file, or a fresh
    PostgreSQL database, each a copy of a template built once per test run."""
    with migrated_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`database_url` shared by the tests of one module (e.g. one demo study for them all)."""
    with migrated_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


def prepare_database(url: str) -> None:
    """Migrate the database at `url` and bind ZM001 to it (as a server's start would)."""
    upgrade(url)
    engine = make_engine(url)
    try:
        registry = bind_studies(engine, [load_study(FORMS)], now=utcnow())
    finally:
        engine.dispose()
    (study,) = registry.by_id.values()
    assert (study.db_id, study.version) == (1, 1), "tests expect ZM001 as study 1, version 1"


class _Templates:
    """One prepared database per backend and test run, copied for each test (migrating a
    database takes seconds; copying a file or a PostgreSQL template, milliseconds)."""

    def __init__(self) -> None:
        self.sqlite: Path | None = None
        self.postgres: str | None = None

    def sqlite_copy(self, directory: Path) -> str:
        if self.sqlite is None:
            folder = Path(tempfile.mkdtemp(prefix="trialdesk-template-"))
            prepare_database(f"sqlite:///{folder / 'template.db'}")
            self.sqlite = folder / "template.db"
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "trialdesk.db"
        shutil.copyfile(self.sqlite, target)
        return f"sqlite:///{target}"

    def postgres_name(self, admin: Engine, admin_url: str) -> str:
        if self.postgres is None:
            name = f"trialdesk_template_{uuid.uuid4().hex[:12]}"
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            prepare_database(make_url(admin_url).set(database=name).render_as_string(False))
            self.postgres = name
        return self.postgres

    def drop(self) -> None:
        admin_url = _postgres_admin_url()
        if self.postgres and admin_url:
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self.postgres}" WITH (FORCE)'))
            admin.dispose()
        if self.sqlite:
            shutil.rmtree(self.sqlite.parent, ignore_errors=True)


TEMPLATES = _Templates()


@pytest.fixture(scope="session", autouse=True)
def _drop_templates() -> Iterator[None]:
    yield
    TEMPLATES.drop()


@contextmanager
def migrated_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a copy of the prepared database on `backend`, dropped afterwards."""
    if backend == "sqlite":
        yield TEMPLATES.sqlite_copy(directory)
        return
    admin_url = _postgres_admin_url()
    if admin_url is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is required in CI: TRIALDESK_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (set TRIALDESK_TEST_POSTGRES_URL)")
    name = f"trialdesk_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    template = TEMPLATES.postgres_name(admin, admin_url)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def demo_engine(engine: Engine, zm001: Study) -> Engine:
    """The database with demo sites and accounts (no subjects)."""
    load_demo(engine, zm001, subjects=0)
    return engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class InProcessServer:
    """The real app answering in the test's process through starlette's TestClient (ASGI
    calls: no socket, no server thread), for HTTP tests that need no socket. A browser, a
    second process or concurrent clients need a LiveServer."""

    url = "http://testserver"

    def __init__(
        self,
        database_url: str,
        study: Study,
        *,
        forms: Path = FORMS,
        others: tuple[tuple[Study, StudyFolders], ...] = (),
    ) -> None:
        """Serve `study` (read from `forms`) and the `others`, each with its folders."""
        self.settings = Settings(
            environment="test",
            database_url=database_url,
            studies=(StudyFolders(forms=forms, exports=EXPORTS), *(f for _, f in others)),
            secret_key="t" * 32,
        )
        served = [study, *(other for other, _ in others)]
        self.app = create_app(self.settings, [replace(s, db_id=None, version=0) for s in served])

    def client(
        self,
        *,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
        timeout: float = 30,
    ) -> httpx.Client:
        """A client of the server, as httpx.Client(base_url=server.url) would be. A server
        error answers 500 with the app's error page, as over a socket."""
        del timeout  # in-process calls do not wait on a network
        # starlette's TestClient is an httpx2.Client (httpx's successor, same interface): what
        # the tests call of it they call of httpx.Client.
        client = TestClient(
            self.app, base_url=self.url, headers=headers, follow_redirects=follow_redirects,
            raise_server_exceptions=False,
        )  # fmt: skip
        return cast(httpx.Client, client)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.app.fastapi.state.engine.dispose()


class LiveServer(InProcessServer):
    """A uvicorn server in a thread, serving the real app on 127.0.0.1 from `__enter__`."""

    def client(
        self,
        *,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
        timeout: float = 30,
    ) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers=headers, follow_redirects=follow_redirects, timeout=timeout
        )

    def __enter__(self) -> Self:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(demo_engine: Engine, database_url: str, zm001: Study) -> Iterator[LiveServer]:
    """The demo accounts' database served over a socket on 127.0.0.1."""
    with LiveServer(database_url, zm001) as server:
        yield server


@pytest.fixture
def app_server(demo_engine: Engine, database_url: str, zm001: Study) -> Iterator[InProcessServer]:
    """The demo accounts' database served in-process (see InProcessServer)."""
    with InProcessServer(database_url, zm001) as server:
        yield server


def csrf_token(client: httpx.Client, path: str = "/login") -> str:
    """Fetch a page so the CSRF cookie is set; return the token embedded in it."""
    response = client.get(path)
    body = lxml.html.document_fromstring(response.text).find("body")
    headers = body.get("hx-headers") if body is not None else None
    assert headers, f"{path} has no CSRF token ({response.status_code})"
    token: str = json.loads(headers)["x-csrftoken"]
    return token


def logged_in_client(
    server: InProcessServer, username: str, password: str = DEMO_PASSWORD
) -> httpx.Client:
    client = server.client()
    token = csrf_token(client)
    response = client.post(
        "/login", data={"username": username, "password": password, "csrftoken": token}
    )
    assert response.status_code == 303, response.text
    return client

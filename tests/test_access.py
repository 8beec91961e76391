"""Every route declares who may use it, and every role is refused what it may not do.

The test walks the app's route table: a new route without a permission rule fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlmodel import Session

from app.access import PERMISSIONS, Permission
from app.models import Role, pk
from app.web.deps import PermissionCheck
from tests import factories
from tests.conftest import InProcessServer, csrf_token, logged_in_client

PUBLIC = {
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/health"),
}
ROLE_USERS = {
    Role.INVESTIGATOR: "investigator",
    Role.COORDINATOR: "coordinator",
    Role.MONITOR: "monitor",
    Role.DATA_MANAGER: "datamanager",
    Role.SPONSOR: "sponsor",
    Role.ADMIN: "admin",
}


def permission_checks(dependant: Dependant) -> Iterator[Permission]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, PermissionCheck):
            yield dependency.call.permission
        yield from permission_checks(dependency)


def flat_routes(routes: list[Any]) -> Iterator[Any]:
    """Routes, with those of included routers (FastAPI keeps them behind a wrapper) inlined."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from flat_routes(included.routes) if included is not None else [route]


def app_routes(server: InProcessServer) -> list[tuple[str, str, set[Permission]]]:
    rows = []
    for route in flat_routes(server.app.fastapi.routes):
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods):
            rows.append((method, route.path, set(permission_checks(route.dependant))))
    return rows


def test_every_route_declares_a_permission(app_server: InProcessServer) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path, permissions in app_routes(app_server)
        if not permissions and (method, path) not in PUBLIC
    ]
    assert undeclared == []


def fill(path: str, subject_id: int) -> str:
    values = {
        "subject_id": str(subject_id), "event_oid": "SE.SCR", "event_repeat": "1",
        "form_oid": "F.DM", "form_repeat": "1", "group_oid": "IG.DM", "group_repeat": "1",
        "item_name": "SEX", "token_id": "999999", "user_id": "1", "assignment_id": "1", "job_id": "1",
        "study_oid": "ZM001", "query_id": "1", "lock_id": "1",
    }  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    """A well-formed request, so that only the access rules can refuse it."""
    if path.startswith("/api/"):
        body: dict[str, Any] = {}
        if path.endswith("/status"):
            body = {"json": {"to": "screen_failed", "effective": "2026-01-01"}}
        elif path.endswith("/events/SE.SCR/1"):
            body = {"json": {"visit_date": "2026-01-01"}}
        elif method in ("POST", "PUT"):
            body = {"json": {"version": 0, "values": {}}}
        return client.request(method, path, **body)
    token = csrf_token(client, "/subjects")
    data = {
        "csrftoken": token,
        "to": "screen_failed",
        "effective": "2026-01-01",
        "site_id": "1",
        "visit_date": "2026-01-01",
    }
    return client.request(method, path, data=data if method == "POST" else None)


def clients(server: InProcessServer, username: str) -> tuple[httpx.Client, httpx.Client]:
    """A browser-session client and an API-token client for one user."""
    browser = logged_in_client(server, username)
    engine = server.app.fastapi.state.engine
    with Session(engine) as session:
        secret = factories.api_token(session, username, "walk")
    api = server.client(headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    return browser, api


@pytest.fixture
def subject_ids(app_server: InProcessServer) -> dict[str, int]:
    """One subject at site 01 and one at site 02."""
    engine = app_server.app.fastapi.state.engine
    ids = {}
    with Session(engine, expire_on_commit=False) as session:
        for username, site in (("coordinator", 1), ("coordinator2", 2)):
            study = app_server.app.fastapi.state.studies.by_oid["ZM001"]
            subject = factories.register(session, study, site_id=site, by=username)
            ids[f"site{site}"] = pk(subject)
    return ids


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_role_is_refused_every_route_it_lacks_the_permission_for(
    app_server: InProcessServer, subject_ids: dict[str, int]
) -> None:
    routes = [r for r in app_routes(app_server) if (r[0], r[1]) not in PUBLIC]
    for role, username in ROLE_USERS.items():
        browser, api = clients(app_server, username)
        lacking = [r for r in routes if not all(role in PERMISSIONS[p] for p in r[2])]
        # Every role but the ones holding every permission is refused something.
        assert lacking or all(role in roles for roles in PERMISSIONS.values()), role
        for method, path, permissions in routes:
            allowed = all(role in PERMISSIONS[p] for p in permissions)
            client = api if path.startswith("/api/") else browser
            response = call(client, method, fill(path, subject_ids["site1"]))
            where = f"{username} {method} {path}: {response.status_code}"
            if allowed:
                assert response.status_code != 403 and response.status_code < 500, where
            else:
                assert response.status_code == 403, where


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_site_users_get_not_found_for_every_subject_route_of_another_site(
    app_server: InProcessServer, subject_ids: dict[str, int]
) -> None:
    subject_routes = [r for r in app_routes(app_server) if "{subject_id}" in r[1]]
    form = "/events/{event_oid}/{event_repeat}/forms/{form_oid}/{form_repeat}"
    for expected in (
        ("GET", "/subjects/{subject_id}"), ("GET", "/subjects/{subject_id}" + form),
        ("POST", "/subjects/{subject_id}" + form), ("POST", "/subjects/{subject_id}/status"),
        ("GET", "/api/v1/studies/{study_oid}/subjects/{subject_id}"),
        ("PUT", "/api/v1/studies/{study_oid}/subjects/{subject_id}" + form),
    ):  # fmt: skip
        assert expected in [(m, p) for m, p, _ in subject_routes], expected
    for username, role, other_site in (
        ("coordinator", Role.COORDINATOR, "site2"),
        ("investigator", Role.INVESTIGATOR, "site2"),
        ("coordinator2", Role.COORDINATOR, "site1"),
    ):
        browser, api = clients(app_server, username)
        for method, path, permissions in subject_routes:
            if not all(role in PERMISSIONS[p] for p in permissions):
                continue  # refused whatever the subject (the test above)
            client = api if path.startswith("/api/") else browser
            response = call(client, method, fill(path, subject_ids[other_site]))
            assert response.status_code == 404, (
                f"{username} {method} {path}: {response.status_code}"
            )


def test_the_readme_role_table_is_the_code_table() -> None:
    from app.models import Role
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- roles-table -->\n")[1].split("<!-- /roles-table -->")[0]
    rows = [line.strip("|").split("|") for line in table.strip().splitlines()[2:]]
    documented = {
        cells[0].strip(): {
            role for role, cell in zip(Role, cells[1:], strict=True) if cell.strip() == "yes"
        }
        for cells in rows
    }
    assert documented == {p.value.replace("_", " "): set(roles) for p, roles in PERMISSIONS.items()}

"""Operating TrialDesk: the server refuses broken SDTM mappings as it refuses a broken study,
answers `GET /health` for a container's HEALTHCHECK, and `create-admin` gives a fresh
installation its first account."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from app import auth
from app.config import Settings, StudyFolders
from app.db import make_engine
from app.main import create_app
from app.models import AuditRecord, RoleAssignment, UserAccount, utcnow
from app.study.problems import StudyDefinitionError
from tests.conftest import REPO, LiveServer


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`trialdesk ARGS` in the repository, with `env` and no administrator variables but
    those given."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TRIALDESK_ADMIN_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**inherited, **env},
        cwd=REPO,
        check=False,
        timeout=120,
    )


@pytest.fixture
def broken_exports(tmp_path: Path) -> Path:
    """The ZM001 mappings with DM mapping an item that does not exist."""
    exports = tmp_path / "exports"
    shutil.copytree(REPO / "exports", exports)
    dm = exports / "DM.yaml"
    dm.write_text(dm.read_text().replace("item: DM.BRTHDAT", "item: DM.BIRTHDAT"))
    return exports


def test_serve_refuses_broken_mappings_with_the_report_of_study_check(
    broken_exports: Path, tmp_path: Path
) -> None:
    check = run("study", "check", "forms", "--exports", str(broken_exports), env={})
    assert check.returncode == 1
    assert "unknown item DM.BIRTHDAT" in check.stderr
    env = {
        "TRIALDESK_STUDIES": json.dumps(
            [{"forms": str(REPO / "forms"), "exports": str(broken_exports)}]
        ),
        "TRIALDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    serve = run("serve", "--port", "1", env=env)
    assert serve.returncode == 1
    assert report(serve.stderr) == report(check.stderr)


def report(stderr: str) -> str:
    """The problem report in a command's stderr, without the rows of its progress display."""
    found = re.search(r"^\d+ problem\(s\) in the study definition:\n(  .*\n)+", stderr, re.M)
    assert found, stderr
    return found.group(0)


def settings_with_exports(url: str, exports: Path) -> Settings:
    return Settings(
        database_url=url, studies=(StudyFolders(forms=REPO / "forms", exports=exports),)
    )


def test_the_app_factory_refuses_broken_or_missing_mappings(
    broken_exports: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(StudyDefinitionError) as broken:
        create_app(settings_with_exports(url, broken_exports))
    assert "1 problem(s) in the study definition" in str(broken.value)
    assert "variables[13].item: unknown item DM.BIRTHDAT" in str(broken.value)
    with pytest.raises(StudyDefinitionError) as missing:
        create_app(settings_with_exports(url, tmp_path / "nowhere"))
    assert f"{tmp_path / 'nowhere'}: is not a folder" in str(missing.value)


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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_create_admin_makes_the_first_account_once_under_the_password_policy(
    database_url: str,
) -> None:
    url = {"TRIALDESK_DATABASE_URL": database_url}
    admin = {"TRIALDESK_ADMIN_USERNAME": "chief", "TRIALDESK_ADMIN_PASSWORD": "Start-2026-site"}

    unset = run("create-admin", env=url)
    assert unset.returncode == 1
    assert "Set TRIALDESK_ADMIN_USERNAME and TRIALDESK_ADMIN_PASSWORD" in unset.stderr
    weak = run("create-admin", env={**url, **admin, "TRIALDESK_ADMIN_PASSWORD": "chief-1"})
    assert weak.returncode == 1
    assert "Not created: a password needs at least 10 characters" in weak.stderr
    created = run("create-admin", env={**url, **admin})
    assert created.returncode == 0, created.stderr
    assert "Created administrator chief" in created.stdout
    other = {"TRIALDESK_ADMIN_USERNAME": "other", "TRIALDESK_ADMIN_PASSWORD": "Other-2026-x"}
    again = run("create-admin", env={**url, **other})
    assert again.returncode == 0, again.stderr
    assert "Accounts exist: no administrator created." in again.stdout

    engine = make_engine(database_url)
    with Session(engine) as session:
        users = session.exec(select(UserAccount.username)).all()
        roles = session.exec(select(RoleAssignment.role, RoleAssignment.site_id)).all()
        audit = session.exec(
            select(AuditRecord.action, AuditRecord.details, AuditRecord.source)
        ).all()
        auth.login(
            session, username="chief", password="Start-2026-site", source="web", now=utcnow()
        )
    engine.dispose()
    assert users == ["chief"]
    assert roles == [("admin", None)]
    assert ("role_grant", "chief: admin every study", "cli") in audit
    assert ("user_create", "chief", "cli") in audit

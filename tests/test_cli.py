"""The command line as an operator uses it: demo, serve refusing an unmigrated database, serve
with several worker processes, create-user, exports refusing an unknown scope."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from app.db import make_engine
from app.models import RoleAssignment, UserAccount
from tests.conftest import REPO, free_port


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=REPO,
        check=False,
        timeout=120,
    )


def test_serve_refuses_an_unmigrated_database_and_says_what_to_run(tmp_path: Path) -> None:
    env = {"TRIALDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    result = run("serve", "--port", "1", env=env)
    assert result.returncode == 1
    assert "has no tables yet" in result.stderr and "trialdesk db upgrade" in result.stderr


def test_demo_creates_accounts_and_subjects_once(tmp_path: Path) -> None:
    env = {"TRIALDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    first = run("demo", "--subjects", "3", env=env)
    assert first.returncode == 0, first.stderr
    assert "Demo data loaded." in first.stdout and "coordinator" in first.stdout
    again = run("demo", env=env)
    assert again.returncode == 0 and "already there" in again.stdout
    # The 3+3 holds the demo's story only: more subjects are refused, naming the limit.
    larger = run("demo", "--subjects", "500", env=env)
    assert larger.returncode == 1
    assert "The demo's dose escalation has 24 subjects, not 500" in larger.stderr


def _worker_pids(parent: int) -> set[int]:
    """The spawned worker processes of `parent` (from /proc: Linux, like SO_REUSEPORT)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == parent and b"spawn_main" in command:
            pids.add(int(entry.name))
    return pids


def _listening_sockets(port: int) -> int:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A"
    )


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _wait(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_serve_spreads_connections_over_workers_and_replaces_a_dead_one(
    database_url: str,
) -> None:
    port = free_port()
    env = {"TRIALDESK_DATABASE_URL": database_url, "TRIALDESK_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/login"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait(answers)
        if database_url.startswith("sqlite"):
            assert _worker_pids(server.pid) == set()  # one process: SQLite has one writer
            return
        workers = _worker_pids(server.pid)
        assert len(workers) == 2
        _wait(lambda: _listening_sockets(port) == 2)  # each worker binds its own
        before = {pid: _cpu_ticks(pid) for pid in workers}
        clients = [httpx.Client(timeout=10) for _ in range(64)]  # 64 keep-alive connections
        for _ in range(12):
            for client in clients:
                assert client.get(url).status_code == 200
        for client in clients:
            client.close()
        used = {pid: _cpu_ticks(pid) - before[pid] for pid in workers}
        assert min(used.values()) > 0.2 * sum(used.values()), f"unbalanced: {used}"

        os.kill(min(workers), signal.SIGKILL)
        _wait(lambda: len(_worker_pids(server.pid) - {min(workers)}) == 2)
        _wait(answers)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    if not database_url.startswith("sqlite"):
        assert "exited with code -9; starting another" in stderr.decode()
        assert _worker_pids(server.pid) == set()
    else:
        assert "serving it from one process" in stderr.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_create_user_takes_a_role_as_the_readme_spells_it(database_url: str) -> None:
    env = {"TRIALDESK_DATABASE_URL": database_url, "TRIALDESK_NEW_PASSWORD": "Long-enough-2026"}
    for username, spelling in (
        ("dm1", "data manager"), ("dm2", "Data-Manager"), ("dm3", "DATA_MANAGER"),
        ("admin1", "Administrator"),
    ):  # fmt: skip
        result = run(
            "create-user", username, "--full-name", "A Person", "--role", spelling, env=env
        )
        assert result.returncode == 0, result.stderr
    engine = make_engine(database_url)
    with Session(engine) as session:
        roles = session.exec(
            select(UserAccount.username, RoleAssignment.role).join(
                RoleAssignment, col(RoleAssignment.user_id) == UserAccount.id
            )
        ).all()
    engine.dispose()
    assert sorted(roles) == [
        ("admin1", "admin"), ("dm1", "data_manager"), ("dm2", "data_manager"),
        ("dm3", "data_manager"),
    ]  # fmt: skip
    refused = run("create-user", "x1", "--full-name", "X", "--role", "manager", env=env)
    assert refused.returncode == 1
    assert "unknown role 'manager'" in refused.stderr and "data manager" in refused.stderr
    usage = run("create-user", "--help", env={**env, "COLUMNS": "200"})
    assert "data_manager, data-manager, 'data manager'" in " ".join(usage.stdout.split())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_export_of_an_unknown_cohort_is_refused_naming_the_valid_ones(
    database_url: str, tmp_path: Path
) -> None:
    env = {"TRIALDESK_DATABASE_URL": database_url}
    assert run("demo", "--subjects", "2", env=env).returncode == 0
    for cohort in ("DL5", "dl2", "DL2:ESC"):
        out = tmp_path / cohort.replace(":", "-")
        result = run(
            "export", "sdtm", "-o", str(out), "--format", "csv", "--cohort", cohort, env=env
        )
        assert result.returncode == 1, result.stdout
        message = " ".join(result.stderr.split())
        assert f"Not exported: cohort: no dose cohort '{cohort}'" in message
        assert "dose cohorts are DL1, DL2, DL3, DL4" in message and ":ESCALATION" in message
        assert not out.exists()
    known = run(
        "export", "define", "-o", str(tmp_path / "dl1"), "--cohort", "DL1:ESCALATION", env=env
    )
    assert known.returncode == 0, known.stderr

"""The command line as an operator uses it: demo, serve refusing an unmigrated database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


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

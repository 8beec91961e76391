"""The Docker image holds everything the server reads at run time, installed, not editable.

No Docker engine runs where these tests do (tests/run.sh builds the image where one does), so
they read the Dockerfile: the folders the settings point at must be copied to where they
point, the package installed from a wheel whose package data covers every non-Python file of
`app/`, and the image must keep its database on a volume and check its health.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import create_engine, inspect

from app.config import Settings
from app.db import upgrade
from tests.conftest import REPO


@dataclass
class Stage:
    """One FROM ... of the Dockerfile: its instructions, and where each COPY put what."""

    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    copied: dict[PurePosixPath, str] = field(default_factory=dict)
    """Destination (absolute) -> source, for COPY from the build context."""


def stages(dockerfile: str) -> list[Stage]:
    text = re.sub(r"\\\n", " ", dockerfile)
    result: list[Stage] = []
    workdir = PurePosixPath("/")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            result.append(Stage(words[2] if len(words) > 2 else None))
            workdir = PurePosixPath("/")
        stage = result[-1]
        stage.instructions.append((keyword, args.strip()))
        if keyword == "WORKDIR":
            workdir = workdir / args.strip()
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, destination = shlex.split(args)
            for source in sources:
                target = workdir / destination
                if destination.endswith("/"):
                    target = target / PurePosixPath(source).name
                stage.copied[target] = source
    return result


def workdir_of(stage: Stage) -> PurePosixPath:
    workdir = PurePosixPath("/")
    for keyword, args in stage.instructions:
        if keyword == "WORKDIR":
            workdir = workdir / args
    return workdir


DOCKERFILE = (REPO / "Dockerfile").read_text()
IMAGE = stages(DOCKERFILE)
FINAL = IMAGE[-1]


def test_the_folders_the_settings_read_are_copied_where_the_server_runs() -> None:
    workdir = workdir_of(FINAL)
    defaults = Settings()
    (study,) = defaults.studies
    folders = {
        "forms": study.forms,
        "exports": study.exports,
        "migrations": defaults.migrations_dir,
    }
    for setting, folder in folders.items():
        assert isinstance(folder, Path) and not folder.is_absolute()
        assert FINAL.copied.get(workdir / folder) == str(folder), f"{setting}: {folder}"
        assert (REPO / folder).is_dir()


def test_the_migrations_folder_is_all_alembic_needs(tmp_path: Path) -> None:
    """No alembic.ini, no source tree: the copied folder alone migrates a database."""
    migrations = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", migrations, ignore=shutil.ignore_patterns("__pycache__"))
    url = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade(url, migrations)
    engine = create_engine(url)
    assert "export_job" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_package_is_installed_from_a_wheel_not_editable() -> None:
    build = next(stage for stage in IMAGE if "app" in stage.copied.values())
    wheel = [args for keyword, args in build.instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip wheel\b.* \.$", command) for command in wheel), wheel
    installs = [args for keyword, args in FINAL.instructions if keyword == "RUN" and "pip" in args]
    assert installs and all("pip install" in command for command in installs)
    for command in installs:
        assert not re.search(r"(^|\s)(-e|--editable)(\s|$)", command), command
        assert ".whl" in command
    assert "app" not in FINAL.copied.values()  # no source tree shadows the installed package


def test_the_wheel_carries_every_file_of_the_package_that_is_not_python() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["app"]
    # setuptools expands package data with glob.glob: the same rules here (dotfiles left out)
    packaged = {
        match
        for pattern in patterns
        for match in glob.glob(pattern, root_dir=REPO / "app", recursive=True)  # noqa: PTH207
    }
    data = {
        str(path.relative_to(REPO / "app"))
        for path in (REPO / "app").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    }
    assert data, "templates, static files and schemas"
    assert data - packaged == set()


def test_the_build_context_keeps_what_the_image_copies() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied = {source for stage in IMAGE for source in stage.copied.values()}
    assert {"app", "forms", "exports", "migrations", "pyproject.toml"} <= copied
    assert copied & ignored == set()


def test_the_database_is_on_a_volume_and_the_health_is_checked() -> None:
    instructions = dict(FINAL.instructions)
    assert "/var/lib/trialdesk" in instructions["VOLUME"].split()
    assert "TRIALDESK_DATABASE_URL=sqlite:////var/lib/trialdesk/" in instructions["ENV"]
    assert "/health" in instructions["HEALTHCHECK"] and "CMD" in instructions["HEALTHCHECK"]
    start = instructions["CMD"]
    assert (
        start.index("db upgrade")
        < start.index("create-admin")
        < start.index("exec trialdesk serve")
    )

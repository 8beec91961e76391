"""The `trialdesk` command line (typer): serve, db upgrade, study check, export odm|sdtm|define,
import odm, create-user, demo."""

from __future__ import annotations

import getpass
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlmodel import Session, select

from app import audit, auth, serving
from app.audit import AuditAction
from app.config import get_settings
from app.db import make_engine, pending_migrations, unit_of_work, upgrade
from app.exporters.produce import (
    SDTM_FORMATS,
    BadExportRequest,
    ExportedFile,
    ExportKind,
    export_request,
    file_manifest,
    produce,
)
from app.models import Role, Site
from app.study.loader import load_study, study_problems
from app.study.problems import StudyDefinitionError, format_problems

cli = typer.Typer(
    help="TrialDesk: electronic data capture for clinical trials.", no_args_is_help=True
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
study_cli = typer.Typer(help="Study definitions.", no_args_is_help=True)
export_cli = typer.Typer(help="CDISC exports.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(study_cli, name="study")
cli.add_typer(export_cli, name="export")
import_cli = typer.Typer(help="Data from other systems.", no_args_is_help=True)
cli.add_typer(import_cli, name="import")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def main() -> None:
    cli()


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every database migration (creates the SQLite file if needed)."""
    settings = get_settings()
    upgrade(settings.database_url)
    console.print(f"Database is up to date: {make_engine(settings.database_url).url!r}")


@study_cli.command("check")
def study_check(
    directory: Annotated[Path, typer.Argument()] = Path("forms"),
    exports: Annotated[
        Path | None,
        typer.Option(help="SDTM mappings to check too (default: the exports_dir setting, if any)"),
    ] = None,
) -> None:
    """Load a study definition and its SDTM mappings; report every problem (file:line: where:
    what)."""
    from app.sdtm.spec import load_sdtm_specs, sdtm_problems

    mappings = exports or get_settings().exports_dir
    check_mappings = exports is not None or mappings.is_dir()
    problems = study_problems(directory)
    if not problems and check_mappings:
        problems = sdtm_problems(mappings, load_study(directory))
    if problems:
        errors.print(format_problems(problems), markup=False, highlight=False)
        raise typer.Exit(1)
    study = load_study(directory)
    items = sum(len(g.items) for f in study.forms.values() for g in f.item_groups)
    domains = len(load_sdtm_specs(mappings, study).domains) if check_mappings else 0
    console.print(
        f"{study.info.oid}: OK — {len(study.schedule.visits)} visits, {len(study.forms)} forms, "
        f"{items} items, {len(study.codelists)} code lists, {len(study.units)} units, "
        f"{domains} SDTM domains"
    )


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(help="server processes")] = 1,
) -> None:
    """Serve the web application (refuses a broken study or an unmigrated database)."""
    settings = get_settings()
    try:
        load_study(settings.study_dir)
    except StudyDefinitionError as error:
        errors.print(str(error), markup=False, highlight=False)
        raise typer.Exit(1) from error
    engine = make_engine(settings.database_url)
    problem = pending_migrations(engine)
    engine.dispose()
    if problem:
        errors.print(problem, markup=False, highlight=False)
        raise typer.Exit(1)
    if workers > 1 and settings.database_url.startswith("sqlite"):
        errors.print(
            "SQLite has a single writer: serving it from one process (use PostgreSQL, "
            "TRIALDESK_DATABASE_URL=postgresql+psycopg://..., for several).",
            markup=False,
        )
        workers = 1
    host, port = host or settings.host, port or settings.port
    console.print(f"TrialDesk serving on http://{host}:{port}/")
    serving.run(
        "app.main:create_app",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )


@cli.command("create-user")
def create_user(
    username: str,
    full_name: Annotated[str, typer.Option("--full-name", help="name shown in the audit trail")],
    role: Annotated[
        list[str], typer.Option(help="ROLE or ROLE:SITE_NUMBER, repeatable (e.g. coordinator:01)")
    ],
) -> None:
    """Create an account; the password is asked for (or read from TRIALDESK_NEW_PASSWORD)."""
    import os

    password = os.environ.get("TRIALDESK_NEW_PASSWORD") or getpass.getpass("Password: ")
    engine = make_engine(get_settings().database_url)
    with Session(engine) as session:
        roles: list[tuple[Role, int | None]] = []
        for spec in role:
            name, _, site_number = spec.partition(":")
            site_id = None
            if site_number:
                site = session.exec(select(Site).where(Site.number == site_number)).first()
                if site is None:
                    errors.print(f"No site numbered {site_number}")
                    raise typer.Exit(1)
                site_id = site.id
            try:
                roles.append((Role(name), site_id))
            except ValueError as error:
                errors.print(f"Unknown role {name}; roles: {', '.join(r.value for r in Role)}")
                raise typer.Exit(1) from error
        try:
            with unit_of_work(session):
                auth.create_user(
                    session,
                    username=username,
                    full_name=full_name,
                    password=password,
                    roles=roles,
                    actor=audit.Actor(None, "cli"),
                )
        except (auth.WeakPassword, ValueError) as error:
            errors.print(f"Not created: {error}")
            raise typer.Exit(1) from error
    console.print(f"Created {username}")


@cli.command()
def demo(
    subjects: Annotated[int, typer.Option(help="subjects to create")] = 20,
) -> None:
    """Migrate the database and load demo sites, one account per role and a few subjects."""
    from app.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, load_demo

    settings = get_settings()
    upgrade(settings.database_url)
    study = load_study(settings.study_dir)
    engine = make_engine(settings.database_url)
    created = load_demo(engine, study, subjects=subjects)
    engine.dispose()
    console.print("Demo data loaded." if created else "Demo data was already there.")
    console.print(f"Accounts (password for all: {DEMO_PASSWORD}):", markup=False)
    for username, _full_name, description in DEMO_ACCOUNTS:
        console.print(f"  {username:<14} {description}", markup=False)


SiteOption = Annotated[str | None, typer.Option("--site", help="site number, e.g. 01")]
CohortOption = Annotated[
    str | None, typer.Option("--cohort", help="dose level, optionally with phase: DL2:ESCALATION")
]
SubjectOption = Annotated[str | None, typer.Option("--subject", help="screening number")]
SinceOption = Annotated[
    datetime | None,
    typer.Option("--changed-since", help="only data changed after this UTC moment (ODM)"),
]


def _run_export(
    kind: ExportKind,
    out_dir: Path,
    *,
    site: str | None,
    cohort: str | None,
    subject: str | None,
    changed_since: datetime | None = None,
    formats: list[str] | None = None,
) -> list[ExportedFile]:
    """Run one export into `out_dir` with a progress bar, audited as a command-line export."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    settings = get_settings()
    study = load_study(settings.study_dir)
    engine = make_engine(settings.database_url)
    problem = pending_migrations(engine)
    if problem:
        errors.print(problem, markup=False, highlight=False)
        raise typer.Exit(1)
    scope = next((name for name, given in (("site", site), ("cohort", cohort),
                  ("subject", subject)) if given), "study")  # fmt: skip
    since = changed_since.replace(tzinfo=UTC) if changed_since else None
    reader = make_engine(settings.database_url, reader=True)
    try:
        with Session(engine) as session:
            request = export_request(
                session, study, kind=kind, formats=formats or list(SDTM_FORMATS), scope=scope,
                site_number=site, cohort=cohort, subject_key=subject, changed_since=since,
            )  # fmt: skip
            scope_text = request.scope.describe(session)
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=errors) as bar, Session(reader) as read_session:
            task = bar.add_task("subjects", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            files = produce(read_session, study, settings, request, out_dir, progress)
        with Session(engine) as session:
            audit.record(
                session, actor=audit.Actor(None, "cli"), action=AuditAction.EXPORT,
                details=f"{kind.description}; {scope_text}; to {out_dir}"[:500],
            )  # fmt: skip
            session.commit()
    except BadExportRequest as error:
        errors.print(f"Not exported: {error.field}: {error}", markup=False)
        raise typer.Exit(1) from error
    finally:
        reader.dispose()
        engine.dispose()
    return files


def _report(out_dir: Path, files: list[ExportedFile]) -> None:
    for entry in file_manifest(out_dir, files):
        rows = "" if entry["rows"] is None else f"{entry['rows']:>9} rows  "
        console.print(f"  {out_dir / entry['name']}  {rows}{entry['bytes']} bytes", markup=False)


@export_cli.command("odm")
def export_odm(
    output: Annotated[Path, typer.Option("-o", "--output", help="file to write")],
    transactional: Annotated[
        bool, typer.Option(help="the full audit history instead of the current data")
    ] = False,
    site: SiteOption = None,
    cohort: CohortOption = None,
    subject: SubjectOption = None,
    changed_since: SinceOption = None,
) -> None:
    """Write ODM 1.3.2: study metadata, AdminData and ClinicalData with audit records."""
    kind = ExportKind.ODM_TRANSACTIONAL if transactional else ExportKind.ODM_SNAPSHOT
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as tmp:
        files = _run_export(
            kind, Path(tmp), site=site, cohort=cohort, subject=subject,
            changed_since=changed_since,
        )  # fmt: skip
        shutil.move(Path(tmp) / files[0].name, output)
    console.print(f"Wrote {output}: {files[0].rows} item values")


@export_cli.command("sdtm")
def export_sdtm(
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write into")],
    format: Annotated[
        list[str] | None, typer.Option("--format", help="xpt, json, csv (repeatable; default all)")
    ] = None,
    site: SiteOption = None,
    cohort: CohortOption = None,
    subject: SubjectOption = None,
) -> None:
    """Write the SDTM datasets (XPT v5, Dataset-JSON 1.1, CSV) with define.xml."""
    files = _run_export(
        ExportKind.SDTM, output, site=site, cohort=cohort, subject=subject, formats=format
    )
    _report(output, files)


@export_cli.command("define")
def export_define(
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write into")],
    site: SiteOption = None,
    cohort: CohortOption = None,
    subject: SubjectOption = None,
) -> None:
    """Write Define-XML 2.1 (define.xml, define.html) for the SDTM datasets of the scope."""
    files = _run_export(ExportKind.DEFINE, output, site=site, cohort=cohort, subject=subject)
    _report(output, files)


@import_cli.command("odm")
def import_odm(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ODM 1.3.2 file")],
    as_user: Annotated[
        str, typer.Option("--as", help="account the import is recorded under (import permission)")
    ],
    valid_subjects_only: Annotated[
        bool, typer.Option(help="store the subjects without problems, skip the others")
    ] = False,
) -> None:
    """Load the ClinicalData of an ODM 1.3.2 file through the data-entry checks and audit trail;
    nothing is stored unless the whole file is accepted. Exits 1 with the report when refused.

    The account is required, not a system actor: imported values enter the audit trail under
    a person who answers for them.
    """
    from app.access import AccessDenied, Permission, load_access
    from app.importers.odm_import import import_odm as import_file
    from app.models import UserAccount

    settings = get_settings()
    study = load_study(settings.study_dir)
    engine = make_engine(settings.database_url)
    try:
        problem = pending_migrations(engine)
        if problem:
            errors.print(problem, markup=False, highlight=False)
            raise typer.Exit(1)
        with Session(engine) as session:
            user = session.exec(select(UserAccount).where(UserAccount.username == as_user)).first()
            if user is None or not user.is_active:
                errors.print(f"No active account {as_user}", markup=False)
                raise typer.Exit(1)
            access = load_access(session, user)
            try:
                access.require(Permission.IMPORT)
            except AccessDenied as denied:
                errors.print(f"{as_user}: {denied}", markup=False)
                raise typer.Exit(1) from denied
            report = import_file(
                session, study, file, access=access, actor=audit.Actor(user, "cli"),
                valid_subjects_only=valid_subjects_only,
            )  # fmt: skip
            if report.stored:
                session.commit()
            else:
                session.rollback()
    finally:
        engine.dispose()
    if not report.stored:
        errors.print(report.format(), markup=False, highlight=False)
        raise typer.Exit(1)
    console.print(report.format(), markup=False, highlight=False)

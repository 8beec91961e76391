"""The `trialdesk` command line (typer): serve, db upgrade, study check, export odm|sdtm|define,
import odm, checks run, escalation simulate (`app.escalation.commands`), create-user,
create-admin, demo."""

from __future__ import annotations

import getpass
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from app.escalation.commands import escalation_cli

# Everything else is imported by the commands that use it: `trialdesk --help` and the light
# commands should not pay for the database layer, the exporters, pandas or lxml.
if TYPE_CHECKING:
    from rich.progress import Progress as Bar
    from rich.progress import TaskID
    from sqlalchemy import Engine

    from app.config import Settings
    from app.exporters.produce import ExportedFile, ExportKind
    from app.exporters.scope import Progress
    from app.study.loader import Study

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
cli.add_typer(escalation_cli, name="escalation")
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


class _Display:
    """The phases of a command's work on stderr, one row each, from its first moment: a
    phase's row appears when it begins, and its bar is full only once its work is done."""

    def __init__(self, bar: Bar) -> None:
        self.bar = bar
        self.rows: dict[str, TaskID] = {}

    def advance(self, name: str, done: int, total: int | None) -> None:
        """`done` of the `total` units of phase `name` (None: not known yet) are done."""
        if name not in self.rows:
            self.rows[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.rows[name], completed=done, total=total)

    def phase(self, name: str) -> Progress:
        """The progress callback of phase `name` (an `app.exporters.scope.Phases`)."""
        return lambda done, total: self.advance(name, done, total)

    def step(self, name: str) -> _Step:
        """A phase of one step: `with display.step(name): ...` (left at 0/1 if it fails)."""
        return _Step(self, name)


class _Step:
    def __init__(self, display: _Display, name: str) -> None:
        self.display, self.name = display, name

    def __enter__(self) -> None:
        self.display.advance(self.name, 0, 1)

    def __exit__(self, kind: object, *_rest: object) -> None:
        if kind is None:
            self.display.advance(self.name, 1, 1)


@contextmanager
def _display() -> Iterator[_Display]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description:<17}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=errors) as bar:
        yield _Display(bar)


def _load_study(display: _Display, directory: Path) -> Study:
    from app.study.loader import load_study

    with display.step("study definition"):
        return load_study(directory)


StudyOption = Annotated[
    str | None,
    typer.Option("--study", help="OID of the study (needed when the instance serves several)"),
]


def _ready(
    display: _Display,
    settings: Settings,
    study_oid: str | None = None,
    *,
    first: bool = False,
    mappings: bool = False,
) -> tuple[Study, Engine]:
    """The study asked for (or the only one served; with `first`, the first the settings
    name), bound to the database, and an engine of the database, once both are usable (and,
    with `mappings`, the SDTM mappings too); else exits 1 saying what is wrong: every problem
    of a definition or its mappings (the report of `study check`), the migration to run, a
    changed definition to upgrade, an unknown study."""
    from app.models import utcnow
    from app.studies import DefinitionChanged, bind_studies, load_studies
    from app.study.problems import StudyDefinitionError

    try:
        with display.step("study definitions"):
            studies = load_studies(settings, with_mappings=mappings)
    except StudyDefinitionError as error:
        errors.print(str(error), markup=False, highlight=False)
        raise typer.Exit(1) from error
    engine = _migrated(display, settings)
    try:
        registry = bind_studies(engine, studies, now=utcnow())
    except DefinitionChanged as changed:
        engine.dispose()
        errors.print(str(changed), markup=False, highlight=False)
        raise typer.Exit(1) from changed
    served = list(registry.by_id.values())
    return _chosen(served[:1] if first and study_oid is None else served, study_oid, engine), engine


def _migrated(display: _Display, settings: Settings) -> Engine:
    """An engine of the database once it is at the latest migration; else exits 1 saying
    what to do."""
    from app.db import make_engine, pending_migrations

    engine = make_engine(settings.database_url)
    with display.step("database"):
        problem = pending_migrations(engine)
    if problem:
        engine.dispose()
        errors.print(problem, markup=False, highlight=False)
        raise typer.Exit(1)
    return engine


def _chosen(studies: list[Study], study_oid: str | None, engine: Engine) -> Study:
    """The study named `study_oid`, or the only one; exits 1 naming the choices otherwise."""
    found = [s for s in studies if study_oid is None or s.info.oid == study_oid]
    if len(found) == 1:
        return found[0]
    engine.dispose()
    names = ", ".join(s.info.oid for s in studies)
    asked = f"no study {study_oid}" if study_oid else "several studies are served"
    errors.print(f"{asked}: give --study, one of {names}", markup=False)
    raise typer.Exit(1)


def _upgrade(display: _Display, url: str) -> None:
    """Migrate the database at `url`; exits 1 when the migrations are not found."""
    from app.db import MissingMigrations, upgrade

    try:
        with display.step("database"):
            upgrade(url)
    except MissingMigrations as missing:
        errors.print(str(missing), markup=False, highlight=False)
        raise typer.Exit(1) from missing


def main() -> None:
    cli()


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every database migration (creates the SQLite file if needed)."""
    from app.config import get_settings
    from app.db import make_engine

    settings = get_settings()
    with _display() as display:
        _upgrade(display, settings.database_url)
    console.print(f"Database is up to date: {make_engine(settings.database_url).url!r}")


@study_cli.command("check")
def study_check(
    directory: Annotated[Path, typer.Argument()] = Path("forms"),
    exports: Annotated[
        Path | None,
        typer.Option(help="SDTM mappings to check too (default: those the settings give it)"),
    ] = None,
) -> None:
    """Load a study definition and its SDTM mappings; report every problem (file:line: where:
    what)."""
    from app.config import get_settings
    from app.study.problems import StudyDefinitionError, format_problems

    configured = (f.exports for f in get_settings().studies if f.forms == directory)
    mappings = exports or next(configured, None)
    check_mappings = mappings is not None and (exports is not None or mappings.is_dir())
    domains = 0
    with _display() as display:
        try:
            study = _load_study(display, directory)
            if check_mappings:
                from app.sdtm.spec import load_sdtm_specs

                assert mappings is not None
                with display.step("SDTM mappings"):
                    domains = len(load_sdtm_specs(mappings, study).domains)
        except StudyDefinitionError as error:
            problems = error.problems
        else:
            problems = []
    if problems:
        errors.print(format_problems(problems), markup=False, highlight=False)
        raise typer.Exit(1)
    items = sum(len(g.items) for f in study.forms.values() for g in f.item_groups)
    console.print(
        f"{study.info.oid}: OK — {len(study.schedule.visits)} visits, {len(study.forms)} forms, "
        f"{items} items, {len(study.codelists)} code lists, {len(study.units)} units, "
        f"{domains} SDTM domains"
    )


@study_cli.command("upgrade")
def study_upgrade(
    preview: Annotated[bool, typer.Option("--preview", help="say what would change")] = False,
    apply: Annotated[bool, typer.Option("--apply", help="release the new version")] = False,
    study: StudyOption = None,
) -> None:
    """Release a changed study definition over a database that holds its data: --preview says
    which forms change and what happens to their values; --apply releases it (audited)."""
    from sqlmodel import Session

    from app import audit
    from app.config import get_settings
    from app.db import make_engine, pending_migrations, unit_of_work
    from app.models import utcnow
    from app.studies import apply_upgrade, load_studies, upgrade_preview
    from app.study.problems import StudyDefinitionError

    if preview == apply:
        errors.print("Give either --preview or --apply.", markup=False)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        studies = load_studies(settings)
    except StudyDefinitionError as error:
        errors.print(str(error), markup=False, highlight=False)
        raise typer.Exit(1) from error
    engine = make_engine(settings.database_url)
    try:
        problem = pending_migrations(engine)
        if problem:
            errors.print(problem, markup=False, highlight=False)
            raise typer.Exit(1)
        chosen = _chosen(studies, study, engine)
        with Session(engine) as session:
            if preview:
                console.print(upgrade_preview(session, chosen).format(), markup=False)
                return
            with unit_of_work(session):
                released = apply_upgrade(
                    session, chosen, actor=audit.Actor(None, "cli"), now=utcnow()
                )
        console.print(f"{chosen.info.oid} runs as {released.mdv_oid}.", markup=False)
    finally:
        engine.dispose()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int, typer.Option(help="server processes")] = 1,
) -> None:
    """Serve the web application (refuses a broken study definition or SDTM mappings, or an
    unmigrated database)."""
    from app import logs, serving
    from app.config import get_settings

    settings = get_settings()
    logs.configure(settings.log_level)
    with _display() as display:
        _study, engine = _ready(display, settings, first=True, mappings=True)
    engine.dispose()
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
        list[str],
        typer.Option(
            help="ROLE or ROLE:SITE_NUMBER, repeatable (e.g. coordinator:01). Roles: "
            "investigator, coordinator, monitor, data manager, sponsor, admin (or administrator); "
            "any case, words joined by a space, '_' or '-' (data_manager, data-manager, "
            "'data manager')"
        ),
    ],
    study: StudyOption = None,
    given_name: Annotated[
        str | None, typer.Option("--given-name", help="first name (ODM FirstName)")
    ] = None,
    family_name: Annotated[
        str | None, typer.Option("--family-name", help="last name (ODM LastName)")
    ] = None,
) -> None:
    """Create an account with roles in a study (an administrator's role covers every study);
    the password is asked for (or read from TRIALDESK_NEW_PASSWORD)."""
    import os

    from sqlmodel import Session, select

    from app import audit, auth
    from app.access import parse_role
    from app.config import get_settings
    from app.db import unit_of_work
    from app.models import Role, Site

    password = os.environ.get("TRIALDESK_NEW_PASSWORD") or getpass.getpass("Password: ")
    with _display() as display:
        bound, engine = _ready(display, get_settings(), study)
    with Session(engine) as session:
        roles: list[tuple[Role, int | None, int | None]] = []
        for spec in role:
            name, _, site_number = spec.partition(":")
            site_id = None
            if site_number:
                site = session.exec(
                    select(Site).where(Site.study_id == bound.id, Site.number == site_number)
                ).first()
                if site is None:
                    errors.print(f"No site numbered {site_number} in {bound.info.oid}")
                    raise typer.Exit(1)
                site_id = site.id
            try:
                granted = parse_role(name)
            except ValueError as error:
                errors.print(f"Not created: {error}", markup=False)
                raise typer.Exit(1) from error
            roles.append((granted, None if granted == Role.ADMIN else bound.id, site_id))
        try:
            with unit_of_work(session):
                auth.create_user(
                    session,
                    username=username,
                    full_name=full_name,
                    password=password,
                    roles=roles,
                    actor=audit.Actor(None, "cli"),
                    given_name=given_name,
                    family_name=family_name,
                )
        except (auth.WeakPassword, ValueError) as error:
            errors.print(f"Not created: {error}")
            raise typer.Exit(1) from error
    console.print(f"Created {username}")


@cli.command("create-admin")
def create_admin(
    username: Annotated[
        str | None, typer.Option(envvar="TRIALDESK_ADMIN_USERNAME", help="the account's name")
    ] = None,
    full_name: Annotated[
        str, typer.Option("--full-name", envvar="TRIALDESK_ADMIN_FULL_NAME")
    ] = "Administrator",
) -> None:
    """Create the first administrator while the database has no account; do nothing once one
    exists (a container runs this at every start). The password is TRIALDESK_ADMIN_PASSWORD
    (an environment variable only: command lines are visible to every local user).

    Exits 1 when there is no account and no administrator to create, or the password is
    refused by the policy; creating is audited like `create-user`.
    """
    import os

    from sqlmodel import Session, select

    from app import audit, auth
    from app.config import get_settings
    from app.db import unit_of_work
    from app.models import Role, UserAccount

    with _display() as display:
        engine = _migrated(display, get_settings())
    try:
        with Session(engine) as session:
            if session.exec(select(UserAccount.id).limit(1)).first() is not None:
                console.print("Accounts exist: no administrator created.")
                return
            password = os.environ.get("TRIALDESK_ADMIN_PASSWORD")
            if not username or not password:
                errors.print(
                    "No account exists yet. Set TRIALDESK_ADMIN_USERNAME and "
                    "TRIALDESK_ADMIN_PASSWORD to create the first administrator.",
                    markup=False,
                )
                raise typer.Exit(1)
            try:
                with unit_of_work(session):
                    auth.create_user(
                        session, username=username, full_name=full_name, password=password,
                        roles=[(Role.ADMIN, None, None)], actor=audit.Actor(None, "cli"),
                    )  # fmt: skip
            except ValueError as error:  # the password policy's WeakPassword among them
                errors.print(f"Not created: {error}", markup=False)
                raise typer.Exit(1) from error
    finally:
        engine.dispose()
    console.print(f"Created administrator {username}", markup=False)


@cli.command()
def demo(
    subjects: Annotated[
        int | None,
        typer.Option(help="subjects to create, at most the dose escalation's story (default)"),
    ] = None,
    study: StudyOption = None,
) -> None:
    """Migrate the database and load demo sites, one account per role and the subjects of
    a dose escalation's story into a study (the first served, unless --study names another)."""
    from app.config import get_settings
    from app.demo import DEMO_ACCOUNTS, DEMO_PASSWORD, SCENARIOS, DemoTooLarge, load_demo

    settings = get_settings()
    with _display() as display:
        _upgrade(display, settings.database_url)
        bound, engine = _ready(display, settings, study, first=True)
        display.advance("sites, accounts", 0, 1)

        def subject_done(done: int, total: int) -> None:
            display.advance("sites, accounts", 1, 1)  # done before the first subject
            display.advance("subjects", done, total)

        try:
            count = len(SCENARIOS) if subjects is None else subjects
            created = load_demo(engine, bound, subjects=count, progress=subject_done)
        except DemoTooLarge as error:
            errors.print(f"Not loaded: {error}", markup=False)
            raise typer.Exit(1) from error
        finally:
            engine.dispose()
        display.advance("sites, accounts", 1, 1)
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
    study_oid: str | None = None,
) -> list[ExportedFile]:
    """Run one export into `out_dir` with the progress of each phase, audited as a
    command-line export."""
    from sqlmodel import Session

    from app import audit
    from app.audit import AuditAction
    from app.config import get_settings
    from app.db import make_engine
    from app.exporters.produce import SDTM_FORMATS, BadExportRequest, export_request, produce

    settings = get_settings()
    scope = next((name for name, given in (("site", site), ("cohort", cohort),
                  ("subject", subject)) if given), "study")  # fmt: skip
    since = changed_since.replace(tzinfo=UTC) if changed_since else None
    with _display() as display:
        study, engine = _ready(display, settings, study_oid)
        reader = make_engine(settings.database_url, reader=True)
        try:
            with Session(engine) as session:
                request = export_request(
                    session, study, kind=kind, formats=formats or list(SDTM_FORMATS),
                    scope=scope, site_number=site, cohort=cohort, subject_key=subject,
                    changed_since=since,
                )  # fmt: skip
                scope_text = request.scope.describe(session)
            out_dir.mkdir(parents=True, exist_ok=True)
            with Session(reader) as read_session:
                files = produce(read_session, study, request, out_dir, display.phase)
            with Session(engine) as session:
                audit.record(
                    session, actor=audit.Actor(None, "cli"), action=AuditAction.EXPORT,
                    study_id=study.id,
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
    from app.exporters.produce import file_manifest

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
    study: StudyOption = None,
) -> None:
    """Write ODM 1.3.2: study metadata, AdminData and ClinicalData with audit records."""
    from app.exporters.produce import ExportKind

    kind = ExportKind.ODM_TRANSACTIONAL if transactional else ExportKind.ODM_SNAPSHOT
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as tmp:
        files = _run_export(
            kind, Path(tmp), site=site, cohort=cohort, subject=subject,
            changed_since=changed_since, study_oid=study,
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
    study: StudyOption = None,
) -> None:
    """Write the SDTM datasets (XPT v5, Dataset-JSON 1.1, CSV) with define.xml."""
    from app.exporters.produce import ExportKind

    files = _run_export(
        ExportKind.SDTM, output, site=site, cohort=cohort, subject=subject, formats=format,
        study_oid=study,
    )  # fmt: skip
    _report(output, files)


@export_cli.command("define")
def export_define(
    output: Annotated[Path, typer.Option("-o", "--output", help="folder to write into")],
    site: SiteOption = None,
    cohort: CohortOption = None,
    subject: SubjectOption = None,
    study: StudyOption = None,
) -> None:
    """Write Define-XML 2.1 (define.xml, define.html) for the SDTM datasets of the scope,
    described from the study definition and mappings (no subject's data is read)."""
    from app.exporters.produce import ExportKind

    files = _run_export(
        ExportKind.DEFINE, output, site=site, cohort=cohort, subject=subject, study_oid=study
    )
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
    study: StudyOption = None,
) -> None:
    """Load the ClinicalData of an ODM 1.3.2 file through the data-entry checks and audit trail;
    nothing is stored unless the whole file is accepted. Exits 1 with the report when refused.

    Runs as an import job (`app.import_jobs`) in this process, in short transactions, so the
    server's users go on working meanwhile; progress shows per subject, checked then stored.
    The account is required, not a system actor: imported values enter the audit trail under
    a person who answers for them.
    """
    from sqlmodel import Session, select

    from app import audit, import_jobs
    from app.access import AccessDenied, Permission, load_access
    from app.config import get_settings
    from app.db import unit_of_work
    from app.models import UserAccount, pk

    settings = get_settings()
    with _display() as display:
        bound, engine = _ready(display, settings, study)
        try:
            with Session(engine) as session:
                user = session.exec(
                    select(UserAccount).where(UserAccount.username == as_user)
                ).first()
                if user is None or not user.is_active:
                    errors.print(f"No active account {as_user}", markup=False)
                    raise typer.Exit(1)
                access = load_access(session, user, bound.id)
                try:
                    access.require(Permission.IMPORT)
                except AccessDenied as denied:
                    errors.print(f"{as_user}: {denied}", markup=False)
                    raise typer.Exit(1) from denied
                with unit_of_work(session), file.open("rb") as upload:
                    job_id = pk(
                        import_jobs.create_job(
                            session, bound, access, import_jobs.upload_name(file.name), upload,
                            valid_subjects_only=valid_subjects_only,
                            actor=audit.Actor(user, "cli"),
                        )
                    )  # fmt: skip
            display.advance("reading the file", 0, 1)

            def progress(phase: str, done: int, total: int) -> None:
                display.advance("reading the file", 1, 1)
                display.advance(phase, done, total)

            import_jobs.run_job(engine, bound, job_id, source="cli", progress=progress)
            display.advance("reading the file", 1, 1)
            with Session(engine) as session:
                view = import_jobs.get_job(session, access, job_id)
        finally:
            engine.dispose()
    report = view.report
    if report is None:
        errors.print(f"{file.name}: the import failed: {view.message}", markup=False)
        raise typer.Exit(1)
    if not report.stored:
        errors.print(report.format(), markup=False, highlight=False)
        raise typer.Exit(1)
    console.print(report.format(), markup=False, highlight=False)


checks_cli = typer.Typer(help="Edit checks.", no_args_is_help=True)
cli.add_typer(checks_cli, name="checks")


@checks_cli.command("run")
def run_checks(
    site: SiteOption = None,
    subject: SubjectOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would open and close; change nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    study: StudyOption = None,
) -> None:
    """Run every edit check over the study (or one site or subject) and open, re-open,
    resolve and close system queries to match, audited as the system; one subject at a
    time, each in its own transaction."""
    import json

    from app import audit
    from app.checks.batch import run_batch
    from app.config import get_settings

    with _display() as display:
        bound, engine = _ready(display, get_settings(), study)
        try:
            report = run_batch(
                engine, bound, site_number=site, subject_key=subject, dry_run=dry_run,
                actor=audit.Actor(None, "cli"), progress=display.phase("subjects"),
            )  # fmt: skip
        except LookupError as unknown:
            errors.print(str(unknown).strip("'\""), markup=False)
            raise typer.Exit(1) from unknown
        finally:
            engine.dispose()
    if as_json:
        console.print_json(json.dumps(report.as_json()))
        return
    for finding in report.findings:
        console.print(
            f"{finding['check']} {finding['subject']} {finding['event']} {finding['form']} "
            f"{finding['item']} #{finding['repeat']} ({finding['severity']}): {finding['message']}",
            markup=False, highlight=False,
        )  # fmt: skip
    made = ", ".join(f"{n} {kind}" for kind, n in sorted(report.transitions.items())) or "none"
    would = "would be made" if dry_run else "made"
    console.print(
        f"{report.checks} checks on {report.subjects} subjects in {report.seconds:.1f} s: "
        f"{len(report.findings)} findings; query transitions {would}: {made}",
        markup=False,
    )

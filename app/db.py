"""Engine creation and the migration state check; sessions are opened by the web layer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.config import get_settings

POOL_SIZE = 10
POOL_OVERFLOW = 10
"""Connections per server process (PostgreSQL): kept open, and opened beyond those at peaks."""


def make_engine(url: str, *, reader: bool = False) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    A relative SQLite path is created (with its folder) relative to the working directory.
    A `reader` engine is for long read-only work such as exports: each transaction reads one
    consistent snapshot (PostgreSQL REPEATABLE READ, READ ONLY; a deferred SQLite transaction
    in WAL mode), and it never queues behind, or blocks, the writers of the serving engine.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_size"] = POOL_SIZE
        kwargs["max_overflow"] = POOL_OVERFLOW
    # Pre-ping (a round trip per checkout) guards against server restarts; an embedded
    # SQLite file has none.
    kwargs["pool_pre_ping"] = parsed.get_backend_name() != "sqlite"
    if reader and parsed.get_backend_name() != "sqlite":
        kwargs["execution_options"] = {
            "isolation_level": "REPEATABLE READ",
            "postgresql_readonly": True,
        }
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if reader:
            event.listen(engine, "begin", _begin_deferred)
        else:
            _serialise_sqlite_transactions(engine)
    return engine


def transaction_capacity(engine: Engine) -> int:
    """How many transactions of `engine` one process runs at once: one on SQLite (a single
    writer; see `_serialise_sqlite_transactions`), else the connections its pool may open."""
    return 1 if engine.dialect.name == "sqlite" else POOL_SIZE + POOL_OVERFLOW


def _begin_deferred(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


SQLITE_LOCK_TIMEOUT = 30


def _serialise_sqlite_transactions(engine: Engine) -> None:
    """Run this process's SQLite transactions one at a time, each holding the write lock from
    its start (BEGIN IMMEDIATE).

    SQLite has one writer. Left to itself, a thread that starts reading and then wants to
    write waits in SQLite's busy handler, which sleeps in growing steps (up to a second on
    some builds): under concurrent saves that made the 99th percentile latency seconds long.
    Queueing on a lock in Python instead costs each waiter only the time of the transactions
    ahead of it. Across processes, the busy timeout still applies.
    """
    # A plain lock, not an RLock: FastAPI may check a connection out in one worker thread
    # (a dependency) and return it in another (the endpoint).
    lock = threading.Lock()

    def checkout(*_args: Any) -> None:
        if not lock.acquire(timeout=SQLITE_LOCK_TIMEOUT):
            raise TimeoutError("the SQLite database stayed busy; try again")

    def checkin(*_args: Any) -> None:
        lock.release()

    def begin(connection: Any) -> None:
        # Straight to the driver: every request begins a transaction, and SQLAlchemy's
        # statement machinery costs more than this statement.
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")

    # The lock spans a connection's checkout from the pool (a session holds one for the length
    # of its transaction), which covers every way a transaction can end.
    event.listen(engine.pool, "checkout", checkout)
    event.listen(engine.pool, "checkin", checkin)
    event.listen(engine, "begin", begin)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by the "begin" event
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def unit_of_work(session: Session) -> Iterator[Session]:
    """One user action: commit when the block ends, roll back when it raises. The boundary of
    a request or command opens it; the functions it calls never commit or roll back."""
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    session.commit()


class MissingMigrations(RuntimeError):
    """The migrations folder is not where the settings say."""


def alembic_config(url: str, migrations: Path | None = None) -> Config:
    """Alembic's configuration for the database at `url`, built here rather than read from
    `alembic.ini` (which serves developers' `alembic revision` in a checkout). `migrations`
    is the alembic folder, by default the `migrations_dir` setting.

    Raises MissingMigrations when that folder holds no alembic environment."""
    folder = migrations or get_settings().migrations_dir
    if not (folder / "env.py").is_file():
        raise MissingMigrations(
            f"No database migrations in {str(folder)!r}: run TrialDesk from its folder (the one "
            "with migrations/) or set TRIALDESK_MIGRATIONS_DIR."
        )
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, migrations: Path | None = None) -> None:
    """Apply every migration (of `migrations`, by default the setting's folder) to the
    database at `url`, creating it if needed."""
    from alembic import command

    command.upgrade(alembic_config(url, migrations), "head")


def pending_migrations(engine: Engine, migrations: Path | None = None) -> str | None:
    """None when the database is at the latest migration (of `migrations`, by default the
    setting's folder), else a sentence saying what to do."""
    url = engine.url.render_as_string(hide_password=False)
    try:
        config = alembic_config(url, migrations)
    except MissingMigrations as missing:
        return str(missing)
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return None
    state = "has no tables yet" if current is None else f"is at revision {current}, not {head}"
    return f"The database {engine.url!r} {state}. Run `trialdesk db upgrade` first."

"""Proof that the write path is the only way into the clinical tables: every statement any
test sends to any database is inspected, and an INSERT, UPDATE or DELETE on a clinical table
fails unless `app.crf.persist` (the write path's persist step) is on the call stack.

Installed for the whole test session (conftest), so every page, API call, import, demo and
export that the tests drive is checked; `test_write_path.py` shows it catches a direct write.
Migrations are let through: they change the schema (and backfill), not a subject's data.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from sqlalchemy import Engine, event

CLINICAL_TABLES = frozenset(
    {
        "subject",
        "study_event_data",
        "form_data",
        "item_group_data",
        "item_data",
        "status_alert",
        "query",
        "data_lock",
        "source_verification",
        "signature",
    }
)
DML = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE)
PERSIST = "/app/crf/persist.py"
MIGRATIONS = "/migrations/versions/"


class OutsideTheWritePath(AssertionError):
    """A clinical table was written by code other than the write path's persist step."""


def clinical_table_written(statement: str) -> str | None:
    match = DML.match(statement)
    return match[1] if match and match[1] in CLINICAL_TABLES else None


def _from_persist_or_migration() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if name.endswith(PERSIST) or MIGRATIONS in name:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _check(
    _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    table = clinical_table_written(statement)
    if table is not None and not _from_persist_or_migration():
        raise OutsideTheWritePath(
            f"{statement.split()[0]} on {table} outside app.crf.persist: {statement[:120]}"
        )


def install() -> None:
    """Check every statement of every engine (the listener is on the Engine class)."""
    event.listen(Engine, "before_cursor_execute", _check)


def uninstall() -> None:
    event.remove(Engine, "before_cursor_execute", _check)

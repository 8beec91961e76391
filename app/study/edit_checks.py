"""Edit checks as data: the files in `forms/checks/`, one per form or per topic.

A check is a CEL condition that is true when the data are consistent. It runs on each stored
instance of its `form` (each row of the group its first item belongs to, when that group
repeats) and, when the condition is false, refuses the save (`hard`) or opens a query on its
first item (`soft`); a `batch_only` check runs only in batch runs. What a condition may
read is documented in `forms/README.md` (the check vocabulary) and provided by
`app.checks.scope`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from app.study.model import NAME_PATTERN, OID_PATTERN, Definition

VOCABULARY = frozenset(
    {"visits", "visit", "previous", "next", "logs", "subject", "anchors", "today"}
)
"""The names a condition reads besides its form's items and groups and other forms' names."""


class Severity(StrEnum):
    HARD = "hard"
    """The save is refused, with the message next to the item."""
    SOFT = "soft"
    """The save goes through and a query opens on the item."""


class EditCheck(Definition):
    """One edit check (spec §7: EC001 ...)."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_.\-]*$", description="e.g. EC045")
    form: str = Field(pattern=OID_PATTERN, description="the form it runs on, e.g. F.AE")
    items: tuple[Annotated[str, Field(pattern=NAME_PATTERN)], ...] = Field(
        min_length=1,
        description="names of the form's items the check points at; the query opens on the first",
    )
    condition: str = Field(min_length=1, description="CEL, true when the data are consistent")
    severity: Severity
    message: str = Field(min_length=1, description="what the site reads")
    require_response: bool = Field(
        default=False, description="the site must answer the query with text"
    )
    require_manual_close: bool = Field(
        default=False, description="a person closes the query once the check passes"
    )
    batch_only: bool = Field(
        default=False,
        description="runs in batch runs only, never on save: a check that something entered "
        "later exists (a Death form for a fatal AE), which would fire at every normal entry "
        "before it; soft only, and its query resolves at the next batch run",
    )
    description: str | None = Field(default=None, description="the rule in words, for reviewers")

    @model_validator(mode="after")
    def _batch_only_is_soft(self) -> EditCheck:
        if self.batch_only and self.severity == Severity.HARD:
            raise ValueError("a batch-only check cannot be hard: it never runs on a save")
        return self


class CheckFile(Definition):
    """A file of `forms/checks/`."""

    checks: tuple[EditCheck, ...] = Field(min_length=1)

"""The dose-escalation log: the safety board's decisions as recorded, each signed (build spec
§5.22, "Dose-escalation log"). A decision is never changed or removed; a later decision
(resume after a pause, say) supersedes it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel

from app.models import timestamp_field, utcnow


class BoardDecisionRecord(SQLModel, table=True):
    """One decision of the safety board: what (`kind`, the dose levels it names), when it was
    taken (`decided_on`, the meeting's date), why, what the engine recommended at the time
    and each level's counts then, and the electronic signature of the user who recorded it
    (21 CFR Part 11: printed name, time, meaning). `override` marks a decision the rules did
    not support, recorded with its reason (EC060)."""

    __tablename__ = "board_decision"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", index=True)
    kind: str = Field(max_length=20, description="app.escalation.gates.DecisionKind")
    levels: str = Field(default="", max_length=60, description="dose level codes, comma-separated")
    decided_on: date
    rationale: str = Field(sa_column=Column(Text, nullable=False))
    minutes_reference: str | None = Field(default=None, max_length=200)
    override: bool = False
    override_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    engine_state: str = Field(max_length=40, description="the engine's state when recorded")
    engine_level: str | None = Field(default=None, max_length=20)
    engine_reason: str = Field(sa_column=Column(Text, nullable=False))
    counts: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False),
        description="each level's counts and status when recorded",
    )
    signer_id: int = Field(foreign_key="user_account.id")
    signer_name: str = Field(max_length=200, description="the signer's printed name")
    meaning: str = Field(sa_column=Column(Text, nullable=False))
    signed_at: datetime = timestamp_field(default_factory=utcnow)

    @property
    def level_codes(self) -> tuple[str, ...]:
        return tuple(code for code in self.levels.split(",") if code)

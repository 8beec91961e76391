"""The baseline for bench/form_save.py: a bare FastAPI + SQLModel endpoint inserting one row,
served the same way as TrialDesk (app.serving), on the same database engine settings."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel

from app.db import make_engine


class BareRow(SQLModel, table=True):
    __tablename__ = "bench_bare_row"

    id: int | None = Field(default=None, primary_key=True)
    note: str
    created_at: datetime


def create() -> FastAPI:
    engine = make_engine(os.environ["TRIALDESK_DATABASE_URL"])
    app = FastAPI()

    @app.post("/bare")
    def insert() -> dict[str, int | None]:
        with Session(engine) as session:
            row = BareRow(note="x", created_at=datetime.now(UTC))
            session.add(row)
            session.commit()
            return {"id": row.id}

    return app


def create_table(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=[BareRow.__table__])  # type: ignore[list-item]

"""Alembic environment: the URL comes from the caller (app.db) or the settings."""

from alembic import context
from sqlmodel import SQLModel

import app.escalation.records  # noqa: F401  (registers the tables on SQLModel.metadata)
import app.models  # noqa: F401
from app.config import get_settings
from app.db import make_engine

config = context.config
url = config.attributes.get("database_url") or get_settings().database_url
engine = make_engine(url)

with engine.connect() as connection:
    if connection.dialect.name == "sqlite":
        # Batch migrations copy a table and drop the old one: foreign keys pointing at it must
        # not be enforced meanwhile (SQLite ignores this pragma inside a transaction).
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # end the transaction the statement began: migrations begin their own
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

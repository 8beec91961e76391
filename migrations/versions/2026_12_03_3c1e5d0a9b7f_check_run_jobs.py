"""check run jobs

Revision ID: 3c1e5d0a9b7f
Revises: 56673a7a2d1f
Create Date: 2026-12-03 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import app.models

revision: str = "3c1e5d0a9b7f"
down_revision: str | None = "56673a7a2d1f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "check_run_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_number", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("subject_key", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", app.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", app.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.ForeignKeyConstraint(["requested_by_id"], ["user_account.id"]),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("check_run_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_check_run_job_requested_by_id"), ["requested_by_id"])
        batch_op.create_index(batch_op.f("ix_check_run_job_state"), ["state"])
        batch_op.create_index(batch_op.f("ix_check_run_job_study_id"), ["study_id"])


def downgrade() -> None:
    op.drop_table("check_run_job")

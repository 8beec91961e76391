"""source data verification

Revision ID: 5d1c0a7e9b42
Revises: 3c1e5d0a9b7f
Create Date: 2026-12-03 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import app.models

revision: str = '5d1c0a7e9b42'
down_revision: str | None = "3c1e5d0a9b7f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('source_verification',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('event_oid', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('event_repeat', sa.Integer(), nullable=False),
    sa.Column('form_oid', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('form_repeat', sa.Integer(), nullable=False),
    sa.Column('item_oid', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
    sa.Column('form_version', sa.Integer(), nullable=False),
    sa.Column('verified_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('verified_by_id', sa.Integer(), nullable=True),
    sa.Column('verified_by_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('ended_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_by_id', sa.Integer(), nullable=True),
    sa.Column('ended_by_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=True),
    sa.Column('changed_items', sa.Text(), nullable=True),
    sa.Column('changed_in_version', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ended_by_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['subject_id'], ['subject.id'], ),
    sa.ForeignKeyConstraint(['verified_by_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('source_verification', schema=None) as batch_op:
        batch_op.create_index('ix_source_verification_form', ['subject_id', 'event_oid', 'form_oid'], unique=False)
        batch_op.create_index(batch_op.f('ix_source_verification_study_id'), ['study_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('source_verification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_verification_study_id'))
        batch_op.drop_index('ix_source_verification_form')

    op.drop_table('source_verification')

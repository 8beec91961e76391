"""studies and definition versions

Several studies in one instance: sites, subjects, role assignments, export jobs and audit
records belong to a study; subject keys and site numbers are unique within their study; each
released definition is stored (study_version). A database holding data from before is given
its study from the first study folder of the settings (the one it was entered under), its
roles are that study's (the administrator's stays the instance's), and its forms are marked
as entered under that study's version 1 (`MDV.<study>.1`), which the server stores at its next
start.

Revision ID: 82dbb1f844c8
Revises: c31ef0cb4b44
Create Date: 2026-12-02 21:10:11.750972
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
import yaml
from alembic import op

import app.models
from app.config import get_settings

revision: str = '82dbb1f844c8'
down_revision: str | None = 'c31ef0cb4b44'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNED = ("site", "subject", "export_job", "role_assignment", "login_session")
"""Tables that get a study_id column in batch mode; audit_record gets it by a plain ALTER, so
that SQLite keeps the table (and its append-only triggers) instead of copying it."""
NOT_NULL = ("site", "subject", "export_job")
# SQLite keeps the initial migration's unique constraints unnamed: a naming convention names
# them when batch mode reflects the table, so that they can be dropped.
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
OLD_UNIQUE = {"site": ["number", "oid"], "subject": ["subject_key"], "role_assignment": ["user_id"]}
OLD_POSTGRES_NAMES = {
    ("site", "number"): "site_number_key",
    ("site", "oid"): "site_oid_key",
    ("subject", "subject_key"): "subject_subject_key_key",
    ("role_assignment", "user_id"): "role_assignment_user_id_role_site_id_key",
}


def upgrade() -> None:
    op.create_table('study',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('oid', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('oid')
    )
    op.create_table('study_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('oid', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('released_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('released_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['released_by_id'], ['user_account.id'], ),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('oid'),
    sa.UniqueConstraint('study_id', 'number')
    )
    with op.batch_alter_table('study_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_version_study_id'), ['study_id'], unique=False)
    for table in OWNED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('study_id', sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE audit_record ADD COLUMN study_id INTEGER REFERENCES study (id)")
    else:
        op.add_column(
            "audit_record",
            sa.Column("study_id", sa.Integer(),
                      sa.ForeignKey("study.id", name="fk_audit_record_study"), nullable=True),
        )
    op.create_index("ix_audit_record_study_id", "audit_record", ["study_id"], unique=False)
    study_id = _study_of_existing_data()
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in OWNED:
        names = SQLITE_NAMES if sqlite else {}
        with op.batch_alter_table(table, schema=None, naming_convention=names) as batch_op:
            for column in OLD_UNIQUE.get(table, []):
                name = f"uq_{table}_{column}" if sqlite else OLD_POSTGRES_NAMES[(table, column)]
                batch_op.drop_constraint(name, type_="unique")
            if table in NOT_NULL:
                batch_op.alter_column('study_id', existing_type=sa.Integer(), nullable=False)
            batch_op.create_foreign_key(f"fk_{table}_study", 'study', ['study_id'], ['id'])
            if table in ("site", "subject", "export_job"):
                batch_op.create_index(f'ix_{table}_study_id', ['study_id'], unique=False)
            if table == "site":
                batch_op.create_unique_constraint("uq_site_study_number", ["study_id", "number"])
                batch_op.create_unique_constraint("uq_site_study_oid", ["study_id", "oid"])
            if table == "subject":
                batch_op.create_unique_constraint(
                    "uq_subject_study_key", ["study_id", "subject_key"]
                )
            if table == "role_assignment":
                batch_op.create_unique_constraint(
                    "uq_role_assignment", ["user_id", "role", "study_id", "site_id"]
                )
    with op.batch_alter_table('form_data', schema=None) as batch_op:
        batch_op.alter_column('definition_version',
               existing_type=sa.VARCHAR(length=40),
               type_=sqlmodel.sql.sqltypes.AutoString(length=60),
               existing_nullable=False)
    if study_id is not None:
        _mark_forms_as_version_one(study_id)


def _study_of_existing_data() -> int | None:
    """Give rows from before a study (see the module docstring); None when there are none."""
    connection = op.get_bind()
    if not any(
        connection.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first()  # noqa: S608
        for table in ("site", "subject", "role_assignment", "export_job")
    ):
        return None
    first = get_settings().studies[0].forms / "study.yaml"
    info = yaml.safe_load(first.read_text(encoding="utf-8"))
    study = sa.table("study", sa.column("id"), sa.column("oid"), sa.column("name"),
                     sa.column("created_at", app.models.UTCDateTime()))
    connection.execute(study.insert().values(
        oid=info["oid"], name=info["name"], created_at=datetime.now(UTC)
    ))
    study_id = connection.execute(sa.select(study.c.id).where(study.c.oid == info["oid"])).scalar_one()
    for table in ("site", "subject", "export_job"):
        connection.execute(sa.text(f"UPDATE {table} SET study_id = :id"), {"id": study_id})  # noqa: S608
    connection.execute(
        sa.text("UPDATE role_assignment SET study_id = :id WHERE role <> 'admin'"), {"id": study_id}
    )
    return int(study_id)


def _mark_forms_as_version_one(study_id: int) -> None:
    connection = op.get_bind()
    oid = connection.execute(sa.text("SELECT oid FROM study WHERE id = :id"), {"id": study_id}).scalar_one()
    connection.execute(
        sa.text("UPDATE form_data SET definition_version = :mdv"), {"mdv": f"MDV.{oid}.1"}
    )


def downgrade() -> None:
    connection = op.get_bind()
    studies = connection.execute(sa.text("SELECT count(*) FROM study")).scalar_one()
    if studies > 1:
        raise RuntimeError(
            "this database holds several studies: it cannot go back to one study per instance"
        )
    sqlite = connection.dialect.name == "sqlite"
    with op.batch_alter_table('form_data', schema=None) as batch_op:
        batch_op.alter_column('definition_version',
               existing_type=sqlmodel.sql.sqltypes.AutoString(length=60),
               type_=sa.VARCHAR(length=40),
               existing_nullable=False)
    op.drop_index("ix_audit_record_study_id", table_name="audit_record")
    if sqlite:  # SQLite 3.35+ drops a column in place, keeping the triggers
        op.execute("ALTER TABLE audit_record DROP COLUMN study_id")
    else:
        op.drop_constraint("fk_audit_record_study", "audit_record", type_="foreignkey")
        op.drop_column("audit_record", "study_id")
    for table in reversed(OWNED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == "role_assignment":
                batch_op.drop_constraint("uq_role_assignment", type_="unique")
                batch_op.create_unique_constraint(
                    None if sqlite else OLD_POSTGRES_NAMES[("role_assignment", "user_id")],
                    ["user_id", "role", "site_id"],
                )
            if table == "subject":
                batch_op.drop_constraint("uq_subject_study_key", type_="unique")
                batch_op.create_unique_constraint(
                    None if sqlite else OLD_POSTGRES_NAMES[("subject", "subject_key")],
                    ["subject_key"],
                )
            if table == "site":
                batch_op.drop_constraint("uq_site_study_number", type_="unique")
                batch_op.drop_constraint("uq_site_study_oid", type_="unique")
                for column in ("number", "oid"):
                    batch_op.create_unique_constraint(
                        None if sqlite else OLD_POSTGRES_NAMES[("site", column)], [column]
                    )
            if table in ("site", "subject", "export_job"):
                batch_op.drop_index(f'ix_{table}_study_id')
            batch_op.drop_constraint(f"fk_{table}_study", type_="foreignkey")
            batch_op.drop_column('study_id')
    with op.batch_alter_table('study_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_version_study_id'))
    op.drop_table('study_version')
    op.drop_table('study')

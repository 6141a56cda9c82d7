"""repeat sessions: a person's sessions of one study are numbered (attempt), unique per number

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 01:40:00

"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# SQLite keeps 0001's unique constraint unnamed: the convention names it, so batch mode can drop it.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s_%(column_1_name)s"}
OLD = "uq_participant_session_study_id_participant_hash"


def _view_sql(dialect: str) -> str:
    path = next(Path(__file__).parent.glob("0004_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.responses_long_with_history(dialect)


def _old_name() -> str:
    # PostgreSQL named 0001's constraint itself; SQLite's gets the convention's name.
    found = [c["name"] for c in sa.inspect(op.get_bind()).get_unique_constraints("participant_session")
             if c["column_names"] == ["study_id", "participant_hash"]]
    return found[0] if found and found[0] else OLD


def upgrade():
    op.execute("DROP VIEW responses_long")  # before the table it reads changes
    name = _old_name()
    with op.batch_alter_table('participant_session', schema=None, naming_convention=NAMING) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))
        batch_op.drop_constraint(name, type_='unique')
        batch_op.create_unique_constraint('uq_session_person_attempt', ['study_id', 'participant_hash', 'attempt'])
    op.execute(_view_sql(op.get_bind().dialect.name))


def downgrade():
    op.execute("DROP VIEW responses_long")
    with op.batch_alter_table('participant_session', schema=None) as batch_op:
        batch_op.drop_constraint('uq_session_person_attempt', type_='unique')
        batch_op.create_unique_constraint(OLD, ['study_id', 'participant_hash'])
        batch_op.drop_column('attempt')
    op.execute(_view_sql(op.get_bind().dialect.name))

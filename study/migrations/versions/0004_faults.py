"""faults: returned_at on sessions, the health probe row, responses_long with lease history

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03 18:40:00

"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _initial():
    """The first migration, for the view's SQL (the view grows columns; it is not rewritten)."""
    path = next(Path(__file__).parent.glob("0001_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0001", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAST_COLUMN = "    ps.is_pilot AS is_pilot\n"


def responses_long_with_history(dialect: str) -> str:
    initial = _initial()
    sql = initial.responses_long_sql(dialect)
    assert LAST_COLUMN in sql
    return sql.replace(LAST_COLUMN, f"""    ps.is_pilot AS is_pilot,
    {initial.iso_utc("ps.timed_out_at", dialect)} AS session_timed_out_at,
    {initial.iso_utc("ps.returned_at", dialect)} AS session_returned_at,
    COALESCE(a.received_at > ps.timed_out_at, {'false' if dialect == 'postgresql' else '0'}) AS after_timeout
""")


def upgrade():
    op.execute("DROP VIEW responses_long")  # before the table it reads changes
    with op.batch_alter_table('participant_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('returned_at', sa.DateTime(), nullable=True))
    op.create_table('health_probe',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.execute(responses_long_with_history(op.get_bind().dialect.name))


def downgrade():
    op.execute("DROP VIEW responses_long")  # before the table it reads changes
    op.drop_table('health_probe')
    with op.batch_alter_table('participant_session', schema=None) as batch_op:
        batch_op.drop_column('returned_at')
    op.execute(_initial().responses_long_sql(op.get_bind().dialect.name))

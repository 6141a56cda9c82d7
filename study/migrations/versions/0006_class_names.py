"""class names: a study keeps its stimulus set's class names by label (null: digits 0-9)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 03:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (no batch copy of the table): the responses_long view reading `study` stays.
    op.add_column('study', sa.Column('classes', sa.JSON(), nullable=True))


def downgrade():
    op.drop_column('study', 'classes')

"""security: re-entry secrets, server page times, arrivals, researcher session versions and study roles

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 18:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('participant_session', schema=None) as batch_op:
        batch_op.add_column(sa.Column('browser_key_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('submission_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('screen_reason', sa.String(length=16), nullable=True))

    op.create_table('page_view',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.Integer(), nullable=False),
    sa.Column('page', sa.String(length=16), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['participant_session.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('page_view', schema=None) as batch_op:
        batch_op.create_index('ix_page_view_session_id', ['session_id'], unique=False)

    op.create_table('arrival',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('panel', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('arrival', schema=None) as batch_op:
        batch_op.create_index('ix_arrival_study_at', ['study_id', 'at'], unique=False)
        batch_op.create_index('ix_arrival_address_at', ['address_hash', 'at'], unique=False)

    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('login_failure', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=80), type_=sa.String(length=200))

    op.create_table('study_role',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['admin_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'user_id')
    )
    # Before roles, every researcher could do everything: they keep that on the studies that exist.
    op.execute("INSERT INTO study_role (study_id, user_id, role) SELECT study.id, admin_user.id, 'owner' "
               "FROM study CROSS JOIN admin_user")


def downgrade():
    op.drop_table('study_role')
    with op.batch_alter_table('login_failure', schema=None) as batch_op:
        batch_op.alter_column('key', existing_type=sa.String(length=200), type_=sa.String(length=80))
    with op.batch_alter_table('admin_user', schema=None) as batch_op:
        batch_op.drop_column('session_version')
    with op.batch_alter_table('arrival', schema=None) as batch_op:
        batch_op.drop_index('ix_arrival_address_at')
        batch_op.drop_index('ix_arrival_study_at')
    op.drop_table('arrival')
    with op.batch_alter_table('page_view', schema=None) as batch_op:
        batch_op.drop_index('ix_page_view_session_id')
    op.drop_table('page_view')
    with op.batch_alter_table('participant_session', schema=None) as batch_op:
        batch_op.drop_column('screen_reason')
        batch_op.drop_column('submission_hash')
        batch_op.drop_column('browser_key_hash')

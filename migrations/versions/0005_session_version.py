"""users.session_version, backups.requested_from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:05:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_from', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_column('requested_from')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')

"""users.locale and users.timezone; messages kept for translation (error_message, detail_message)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 02:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    for table in ('backups', 'operations'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('error_message', sa.JSON(), nullable=True))
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail_message', sa.JSON(), nullable=True))
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_message_record', sa.JSON(), nullable=True))
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verify_problems_messages', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_column('verify_problems_messages')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_column('last_message_record')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('detail_message')
    for table in ('operations', 'backups'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('error_message')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('timezone')
        batch_op.drop_column('locale')

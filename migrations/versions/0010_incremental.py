"""incremental folder backups: sources.verify_contents, schedules.mode and full_every

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN: SQLite's batch mode would rebuild the tables and lose AUTOINCREMENT.
    op.add_column('sources', sa.Column('verify_contents', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('schedules', sa.Column('mode', sa.String(length=16), server_default='full', nullable=False))
    op.add_column('schedules', sa.Column('full_every', sa.Integer(), server_default='7', nullable=False))
    op.create_index(op.f('ix_backups_parent_id'), 'backups', ['parent_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_backups_parent_id'), table_name='backups')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_column('full_every')
        batch_op.drop_column('mode')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_column('verify_contents')

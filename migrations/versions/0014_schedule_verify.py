"""schedules: verify, the check queued after each backup a schedule makes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 17:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (no batch copy of the table): existing schedules verify nothing, as before.
    op.add_column('schedules', sa.Column('verify', sa.String(length=16), nullable=False, server_default='none'))


def downgrade():
    op.execute("ALTER TABLE schedules DROP COLUMN verify")

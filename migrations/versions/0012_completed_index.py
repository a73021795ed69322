"""backups: index on (status, completed_at), for the newest completed backup

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 11:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_backups_status_completed_at', 'backups', ['status', 'completed_at'], unique=False)


def downgrade():
    op.drop_index('ix_backups_status_completed_at', table_name='backups')

"""backups: manifests in a table of their own; indexes for per-status lists and totals

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 13:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('backup_manifests',
    sa.Column('backup_id', sa.Integer(), nullable=False),
    sa.Column('members', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['backup_id'], ['backups.id'], name=op.f('fk_backup_manifests_backup_id_backups'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('backup_id', name=op.f('pk_backup_manifests'))
    )
    op.execute("INSERT INTO backup_manifests (backup_id, members) "
               "SELECT id, manifest FROM backups WHERE manifest IS NOT NULL")
    # A plain ALTER TABLE (SQLite 3.35 and later have it), not a batch that copies the table:
    # dropping the old table would fire the ON DELETE actions of every table that refers to
    # backups (their copies, manifests and parent links).
    op.execute("ALTER TABLE backups DROP COLUMN manifest")
    op.drop_index('ix_backups_status', table_name='backups')
    op.create_index('ix_backups_status_created_at', 'backups', ['status', 'created_at', 'id'], unique=False)
    op.create_index('ix_backups_status_file_size', 'backups', ['status', 'file_size'], unique=False)


def downgrade():
    op.drop_index('ix_backups_status_file_size', table_name='backups')
    op.drop_index('ix_backups_status_created_at', table_name='backups')
    op.create_index('ix_backups_status', 'backups', ['status'], unique=False)
    op.add_column('backups', sa.Column('manifest', sa.JSON(), nullable=True))
    op.execute("UPDATE backups SET manifest = (SELECT members FROM backup_manifests "
               "WHERE backup_manifests.backup_id = backups.id)")
    op.drop_table('backup_manifests')

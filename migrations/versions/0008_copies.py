"""backup_copies: archives copied to destinations; backups.local and backups.destination_ids

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 03:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN: SQLite's batch mode would rebuild the table and lose AUTOINCREMENT.
    op.add_column('backups', sa.Column('local', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.add_column('backups', sa.Column('destination_ids', sa.JSON(), server_default='[]', nullable=False))
    op.create_table('backup_copies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backup_id', sa.Integer(), nullable=False),
    sa.Column('destination_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=2048), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('copied_at', sa.DateTime(), nullable=True),
    sa.Column('verified_at', sa.DateTime(), nullable=True),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_message', sa.JSON(), nullable=True),
    sa.Column('operation_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['backup_id'], ['backups.id'], name=op.f('fk_backup_copies_backup_id_backups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], name=op.f('fk_backup_copies_destination_id_destinations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['operation_id'], ['operations.id'], name=op.f('fk_backup_copies_operation_id_operations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backup_copies')),
    sa.UniqueConstraint('backup_id', 'destination_id', name=op.f('uq_backup_copies_backup_id')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('backup_copies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backup_copies_backup_id'), ['backup_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_backup_copies_destination_id'), ['destination_id'], unique=False)


def downgrade():
    op.drop_table('backup_copies')
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_column('destination_ids')
        batch_op.drop_column('local')

"""encryption_keys: age recipients; backups.recipients, schedules.encrypt

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 05:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('encryption_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('recipient', sa.String(length=128), nullable=False),
    sa.Column('has_identity', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_encryption_keys_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_encryption_keys')),
    sa.UniqueConstraint('name', name=op.f('uq_encryption_keys_name')),
    sa.UniqueConstraint('recipient', name=op.f('uq_encryption_keys_recipient')),
    sqlite_autoincrement=True
    )
    # Plain ADD COLUMN: SQLite's batch mode would rebuild the table and lose AUTOINCREMENT.
    op.add_column('backups', sa.Column('recipients', sa.JSON(), server_default='[]', nullable=False))
    op.add_column('schedules', sa.Column('encrypt', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_column('encrypt')
    with op.batch_alter_table('backups', schema=None) as batch_op:
        batch_op.drop_column('recipients')
    op.drop_table('encryption_keys')

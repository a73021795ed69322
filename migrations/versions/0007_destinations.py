"""destinations: S3-compatible places that keep copies of archives

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 02:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('destinations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('endpoint_url', sa.String(length=2048), nullable=False),
    sa.Column('bucket', sa.String(length=63), nullable=False),
    sa.Column('prefix', sa.String(length=1024), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('access_key_id', sa.String(length=128), nullable=False),
    sa.Column('secret_access_key', sa.String(length=256), nullable=False),
    sa.Column('immutable_days', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_destinations')),
    sa.UniqueConstraint('name', name=op.f('uq_destinations_name')),
    sqlite_autoincrement=True
    )


def downgrade():
    op.drop_table('destinations')

"""mirrors: namespaces mirroring an upstream, their tags' freshness, pending manifests,
and the one-fetch-per-blob leases

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 16:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mirrors',
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=True),
    sa.Column('password', sa.Text(), nullable=True),
    sa.Column('refresh_seconds', sa.Integer(), nullable=False),
    sa.Column('verify_first', sa.Boolean(), nullable=False),
    sa.Column('keep_days', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('namespace', name=op.f('pk_mirrors'))
    )
    op.create_table('mirror_tags',
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=False),
    sa.Column('digest', sa.String(length=100), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pulled_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'],
                            name=op.f('fk_mirror_tags_repository_id_repositories'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('repository_id', 'tag', name=op.f('pk_mirror_tags'))
    )
    op.create_table('mirror_pending',
    sa.Column('repository_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=100), nullable=False),
    sa.Column('tag', sa.String(length=128), nullable=True),
    sa.Column('media_type', sa.String(length=255), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['repository_id'], ['repositories.id'],
                            name=op.f('fk_mirror_pending_repository_id_repositories'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('repository_id', 'digest', name=op.f('pk_mirror_pending'))
    )
    op.create_table('mirror_fetches',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_mirror_fetches'))
    )


def downgrade() -> None:
    op.drop_table('mirror_fetches')
    op.drop_table('mirror_pending')
    op.drop_table('mirror_tags')
    op.drop_table('mirrors')

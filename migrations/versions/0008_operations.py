"""operations: namespace quota and retention, blob scrub state

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 09:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('namespaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quota_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('keep_tags', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('untagged_days', sa.Integer(), nullable=True))
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quarantined_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('scrubbed_at', sa.DateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('blobs', schema=None) as batch_op:
        batch_op.drop_column('scrubbed_at')
        batch_op.drop_column('quarantined_at')
    with op.batch_alter_table('namespaces', schema=None) as batch_op:
        batch_op.drop_column('untagged_days')
        batch_op.drop_column('keep_tags')
        batch_op.drop_column('quota_bytes')

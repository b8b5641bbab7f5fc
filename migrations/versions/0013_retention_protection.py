"""namespaces: retention's protected tag patterns and "keep the newest N ready"

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('namespaces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('keep_ready', sa.Integer(), nullable=True))
        # Every namespace, those with a policy already included, protects "latest".
        batch_op.add_column(sa.Column('protected_tags', sa.Text(), nullable=False,
                                      server_default='["latest"]'))


def downgrade() -> None:
    with op.batch_alter_table('namespaces', schema=None) as batch_op:
        batch_op.drop_column('protected_tags')
        batch_op.drop_column('keep_ready')

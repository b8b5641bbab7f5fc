"""jobs.hw_class: the hardware class a job is for; verifications.hw_class: the class a
result was measured on

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 20:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hw_class', sa.String(length=64), nullable=True))
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hw_class', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.drop_column('hw_class')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('hw_class')

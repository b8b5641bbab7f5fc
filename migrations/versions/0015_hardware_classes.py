"""workers: what each worker process is and can run (capabilities) and its labels;
hardware_classes: named selectors over them

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 17:15:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capabilities', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('labels', sa.Text(), nullable=True))
    op.create_table('hardware_classes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('selector', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_hardware_classes'))
    )


def downgrade() -> None:
    op.drop_table('hardware_classes')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('labels')
        batch_op.drop_column('capabilities')

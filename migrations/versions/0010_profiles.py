"""namespace_profiles: the verification profile per namespace (longest prefix applies)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('namespace_profiles',
    sa.Column('namespace', sa.String(length=255), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=71), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('namespace', name=op.f('pk_namespace_profiles'))
    )


def downgrade() -> None:
    op.drop_table('namespace_profiles')

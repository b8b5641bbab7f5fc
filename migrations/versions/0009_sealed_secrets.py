"""webhooks.secret holds a sealed secret (registry.secretbox), longer than 255 characters

The rows are sealed by the running processes, not here: sealing needs the key, which is
not the migration's to know. The code of 0008 cannot open a sealed secret: before a
downgrade, delete the subscriptions (PostgreSQL refuses to shorten the column while a
sealed secret longer than 255 characters is stored).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=255),
                              type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.Text(),
                              type_=sa.String(length=255), existing_nullable=False)

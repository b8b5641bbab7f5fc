"""verifications: perplexity, regression count and fit lines per KV type, in columns

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

KV_TYPES = ('f16', 'q8_0', 'q4_0')
BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('perplexity', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('regression_count', sa.Integer(), nullable=True))
        for kv in KV_TYPES:
            batch_op.add_column(sa.Column(f'fit_{kv}_base_bytes', sa.BigInteger(),
                                          nullable=True))
            batch_op.add_column(sa.Column(f'fit_{kv}_bytes_per_token', sa.Float(),
                                          nullable=True))
    _backfill()


def _backfill() -> None:
    """The columns of the reports recorded before them, from the stored report JSON (as
    the registry computes them when it records one)."""
    from registry.services.report_columns import report_columns

    conn = op.get_bind()
    table = sa.table('verifications', sa.column('id', sa.Integer()),
                     sa.column('report', sa.Text()),
                     *(sa.column(name) for name in report_columns({})))
    last = 0
    while True:
        rows = conn.execute(sa.select(table.c.id, table.c.report).where(table.c.id > last)
                            .order_by(table.c.id).limit(BATCH)).all()
        if not rows:
            return
        for vid, text in rows:
            try:
                report = json.loads(text) if text else None
            except ValueError:
                report = None
            if isinstance(report, dict):
                values = {k: v for k, v in report_columns(report).items() if v is not None}
                if values:
                    conn.execute(table.update().where(table.c.id == vid).values(**values))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('verifications', schema=None) as batch_op:
        for kv in reversed(KV_TYPES):
            batch_op.drop_column(f'fit_{kv}_bytes_per_token')
            batch_op.drop_column(f'fit_{kv}_base_bytes')
        batch_op.drop_column('regression_count')
        batch_op.drop_column('perplexity')

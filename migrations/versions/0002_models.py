"""models: one row per model manifest (the model card read at push)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('manifest_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('architecture', sa.String(length=255), nullable=True),
    sa.Column('parameter_count', sa.BigInteger(), nullable=True),
    sa.Column('quantization', sa.String(length=255), nullable=True),
    sa.Column('context_length', sa.BigInteger(), nullable=True),
    sa.Column('embedding_length', sa.BigInteger(), nullable=True),
    sa.Column('chat_template', sa.Boolean(), nullable=True),
    sa.Column('tokenizer_model', sa.String(length=255), nullable=True),
    sa.Column('card', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('logical_size', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['manifest_id'], ['manifests.id'], name=op.f('fk_models_manifest_id_manifests'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('manifest_id', name=op.f('pk_models'))
    )


def downgrade() -> None:
    op.drop_table('models')

"""de-identification report counts per dataset

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Counts per action and the attributes an option kept, summed per dataset by additive upserts.
    op.create_table('dataset_deid_counts',
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('option', sa.String(length=40), nullable=True),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], ondelete='CASCADE',
                            name=op.f('fk_dataset_deid_counts_dataset_id_datasets')),
    sa.PrimaryKeyConstraint('dataset_id', 'kind', 'name', name=op.f('pk_dataset_deid_counts'))
    )


def downgrade() -> None:
    op.drop_table('dataset_deid_counts')

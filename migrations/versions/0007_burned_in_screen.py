"""burned-in text screen: keyed hashes of a file's identifying words until its pixels are screened

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    # Keyed HMACs of the header's identifying words, kept only while the image waits to be screened.
    op.add_column('dataset_images', sa.Column('screen_hashes', JSON, nullable=True))


def downgrade() -> None:
    op.drop_column('dataset_images', 'screen_hashes')

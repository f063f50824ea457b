"""splits: dataset versions, their frozen images, splits and split assignments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('dataset_versions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=False),
    sa.Column('label_names', JSON, nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('study_count', sa.Integer(), nullable=False),
    sa.Column('patient_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_versions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_dataset_versions_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_versions')),
    sa.UniqueConstraint('dataset_id', 'content_sha256', name=op.f('uq_dataset_versions_dataset_id'))
    )
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_versions_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_versions_project_id'), ['project_id'], unique=False)

    op.create_table('dataset_version_images',
    sa.Column('version_id', sa.String(length=40), nullable=False),
    sa.Column('image_id', sa.String(length=40), nullable=False),
    sa.Column('study_pseudonym', sa.String(length=80), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=80), nullable=False),
    sa.Column('pixel_sha256', sa.String(length=64), nullable=True),
    sa.Column('labels', JSON, nullable=False),
    sa.Column('user_split', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['version_id'], ['dataset_versions.id'], name=op.f('fk_dataset_version_images_version_id_dataset_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', 'image_id', name=op.f('pk_dataset_version_images'))
    )

    op.create_table('splits',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_version_id', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('seed_drawn', sa.Boolean(), nullable=False),
    sa.Column('fractions', JSON, nullable=True),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('counts', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_splits_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_version_id'], ['dataset_versions.id'], name=op.f('fk_splits_dataset_version_id_dataset_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_splits_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_splits'))
    )
    with op.batch_alter_table('splits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_splits_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_splits_dataset_version_id'), ['dataset_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_splits_project_id'), ['project_id'], unique=False)

    op.create_table('split_assignments',
    sa.Column('split_id', sa.String(length=40), nullable=False),
    sa.Column('image_id', sa.String(length=40), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], name=op.f('fk_split_assignments_split_id_splits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('split_id', 'image_id', name=op.f('pk_split_assignments'))
    )


def downgrade() -> None:
    op.drop_table('split_assignments')
    with op.batch_alter_table('splits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_splits_project_id'))
        batch_op.drop_index(batch_op.f('ix_splits_dataset_version_id'))
        batch_op.drop_index(batch_op.f('ix_splits_dataset_id'))
    op.drop_table('splits')
    op.drop_table('dataset_version_images')
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_versions_project_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_versions_dataset_id'))
    op.drop_table('dataset_versions')

"""datasets: datasets, studies, labels, images

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('duplicate_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_datasets_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets'))
    )
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_datasets_project_id'), ['project_id'], unique=False)

    op.create_table('dataset_labels',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('key_hmac', sa.String(length=64), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_labels_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_labels')),
    sa.UniqueConstraint('dataset_id', 'key_hmac', name=op.f('uq_dataset_labels_dataset_id'))
    )
    with op.batch_alter_table('dataset_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_labels_dataset_id'), ['dataset_id'], unique=False)

    op.create_table('dataset_studies',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('study_key_hmac', sa.String(length=64), nullable=False),
    sa.Column('accession_hmac', sa.String(length=64), nullable=True),
    sa.Column('study_pseudonym', sa.String(length=80), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=80), nullable=False),
    sa.Column('sex', sa.String(length=8), nullable=True),
    sa.Column('age_years', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_studies_dataset_id_datasets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_studies')),
    sa.UniqueConstraint('dataset_id', 'study_key_hmac', name=op.f('uq_dataset_studies_dataset_id'))
    )
    with op.batch_alter_table('dataset_studies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_studies_accession_hmac'), ['accession_hmac'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_studies_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_studies_patient_pseudonym'), ['patient_pseudonym'], unique=False)

    op.create_table('dataset_images',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('study_id', sa.String(length=40), nullable=True),
    sa.Column('study_pseudonym', sa.String(length=80), nullable=True),
    sa.Column('patient_pseudonym', sa.String(length=80), nullable=True),
    sa.Column('sop_instance_uid_pseudonym', sa.String(length=80), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.Column('dicom_key', sa.String(length=300), nullable=True),
    sa.Column('cache_key', sa.String(length=300), nullable=True),
    sa.Column('pixel_sha256', sa.String(length=64), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('columns', sa.Integer(), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('modality', sa.String(length=16), nullable=True),
    sa.Column('body_part', sa.String(length=64), nullable=True),
    sa.Column('view_position', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_images_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['dataset_studies.id'], name=op.f('fk_dataset_images_study_id_dataset_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset_images')),
    sa.UniqueConstraint('dataset_id', 'sop_instance_uid_pseudonym', name=op.f('uq_dataset_images_dataset_id'))
    )
    with op.batch_alter_table('dataset_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dataset_images_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index('ix_dataset_images_dataset_id_status', ['dataset_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_dataset_images_study_id'), ['study_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('dataset_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_images_study_id'))
        batch_op.drop_index('ix_dataset_images_dataset_id_status')
        batch_op.drop_index(batch_op.f('ix_dataset_images_dataset_id'))

    op.drop_table('dataset_images')
    with op.batch_alter_table('dataset_studies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_studies_patient_pseudonym'))
        batch_op.drop_index(batch_op.f('ix_dataset_studies_dataset_id'))
        batch_op.drop_index(batch_op.f('ix_dataset_studies_accession_hmac'))

    op.drop_table('dataset_studies')
    with op.batch_alter_table('dataset_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dataset_labels_dataset_id'))

    op.drop_table('dataset_labels')
    with op.batch_alter_table('datasets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_datasets_project_id'))

    op.drop_table('datasets')

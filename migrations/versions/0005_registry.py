"""registry: registered models, model versions, aliases, batch predictions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('registered_models',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('latest_number', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_registered_models_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registered_models')),
    sa.UniqueConstraint('project_id', 'name', name=op.f('uq_registered_models_project_id'))
    )
    op.create_index(op.f('ix_registered_models_project_id'), 'registered_models', ['project_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('model_id', sa.String(length=40), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('manifest', JSON, nullable=False),
    sa.Column('prefix', sa.String(length=300), nullable=False),
    sa.Column('adapter_sha256', sa.String(length=64), nullable=False),
    sa.Column('test_auroc', sa.Float(), nullable=True),
    sa.Column('mlflow_version', sa.String(length=32), nullable=True),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_model_versions_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_versions_model_id_registered_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['fine_tuning_jobs.id'], name=op.f('fk_model_versions_job_id_fine_tuning_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('model_id', 'number', name=op.f('uq_model_versions_model_id'))
    )
    op.create_index(op.f('ix_model_versions_project_id'), 'model_versions', ['project_id'], unique=False)
    op.create_index(op.f('ix_model_versions_model_id'), 'model_versions', ['model_id'], unique=False)

    op.create_table('model_aliases',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('model_id', sa.String(length=40), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['registered_models.id'], name=op.f('fk_model_aliases_model_id_registered_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_aliases_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_aliases')),
    sa.UniqueConstraint('model_id', 'alias', name=op.f('uq_model_aliases_model_id'))
    )
    op.create_index(op.f('ix_model_aliases_model_id'), 'model_aliases', ['model_id'], unique=False)

    op.create_table('batch_predictions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('version_id', sa.String(length=40), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=False),
    sa.Column('split_id', sa.String(length=40), nullable=False),
    sa.Column('split', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('output_key', sa.String(length=300), nullable=True),
    sa.Column('count', sa.Integer(), nullable=True),
    sa.Column('metrics', JSON, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_batch_predictions_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_batch_predictions_version_id_model_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_batch_predictions_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['split_id'], ['splits.id'], name=op.f('fk_batch_predictions_split_id_splits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_predictions'))
    )
    op.create_index(op.f('ix_batch_predictions_project_id'), 'batch_predictions', ['project_id'], unique=False)
    op.create_index(op.f('ix_batch_predictions_version_id'), 'batch_predictions', ['version_id'], unique=False)


def downgrade() -> None:
    op.drop_table('batch_predictions')
    op.drop_table('model_aliases')
    op.drop_table('model_versions')
    op.drop_table('registered_models')

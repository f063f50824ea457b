"""erasure: erased_members on versions and manifests, data_erased on jobs and model versions, erasure records

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.add_column('datasets', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('dataset_versions', sa.Column('erased_members', sa.Integer(), server_default='0', nullable=False))
    op.add_column('splits', sa.Column('erased_members', sa.Integer(), server_default='0', nullable=False))
    op.add_column('fine_tuning_jobs', sa.Column('data_erased', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('model_versions', sa.Column('data_erased', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('audit_events', sa.Column('details', JSON, nullable=True))

    op.create_table('erasures',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('project_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=80), nullable=False),
    sa.Column('dataset_id', sa.String(length=40), nullable=True),
    sa.Column('removed', JSON, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_erasures_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures'))
    )
    op.create_index('ix_erasures_project_id_kind_target', 'erasures', ['project_id', 'kind', 'target'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_erasures_project_id_kind_target', table_name='erasures')
    op.drop_table('erasures')
    with op.batch_alter_table('audit_events') as batch:
        batch.drop_column('details')
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('data_erased')
    with op.batch_alter_table('fine_tuning_jobs') as batch:
        batch.drop_column('data_erased')
    with op.batch_alter_table('splits') as batch:
        batch.drop_column('erased_members')
    with op.batch_alter_table('dataset_versions') as batch:
        batch.drop_column('erased_members')
    with op.batch_alter_table('datasets') as batch:
        batch.drop_column('deleted_at')

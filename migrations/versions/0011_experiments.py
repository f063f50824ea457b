"""experiments: data-volume experiments, their runs, and a job's training subset

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("train_subset", JSON, nullable=True))
    op.create_table(
        "fine_tuning_experiments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("split_id", sa.String(length=40), nullable=True),
        sa.Column("request", JSON, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_fine_tuning_experiments_project_id_projects"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_fine_tuning_experiments_dataset_id_datasets"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["split_id"],
            ["splits.id"],
            name=op.f("fk_fine_tuning_experiments_split_id_splits"),
            ondelete="SET NULL",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_experiments")),
    )
    for column in ("project_id", "dataset_id"):
        op.create_index(op.f(f"ix_fine_tuning_experiments_{column}"), "fine_tuning_experiments", [column])
    op.create_table(
        "fine_tuning_experiment_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["fine_tuning_experiments.id"],
            name=op.f("fk_fine_tuning_experiment_runs_experiment_id_fine_tuning_experiments"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fine_tuning_jobs.id"],
            name=op.f("fk_fine_tuning_experiment_runs_job_id_fine_tuning_jobs"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fine_tuning_experiment_runs")),
    )
    op.create_index(
        op.f("ix_fine_tuning_experiment_runs_experiment_id"), "fine_tuning_experiment_runs", ["experiment_id"]
    )
    op.create_index(
        op.f("ix_fine_tuning_experiment_runs_job_id"), "fine_tuning_experiment_runs", ["job_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_fine_tuning_experiment_runs_job_id"), table_name="fine_tuning_experiment_runs")
    op.drop_index(
        op.f("ix_fine_tuning_experiment_runs_experiment_id"), table_name="fine_tuning_experiment_runs"
    )
    op.drop_table("fine_tuning_experiment_runs")
    for column in ("project_id", "dataset_id"):
        op.drop_index(op.f(f"ix_fine_tuning_experiments_{column}"), table_name="fine_tuning_experiments")
    op.drop_table("fine_tuning_experiments")
    with op.batch_alter_table("fine_tuning_jobs", schema=None) as batch_op:
        batch_op.drop_column("train_subset")

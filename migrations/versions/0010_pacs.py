"""pacs: datasets' AE titles, PACS nodes, imports

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dicom_ae_title", sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_datasets_dicom_ae_title"), ["dicom_ae_title"])
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dicom_ae_title", sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_model_versions_dicom_ae_title"), ["dicom_ae_title"])
    op.create_table(
        "pacs_nodes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("ae_title", sa.String(length=16), nullable=True),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("auth_secret", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_pacs_nodes_project_id_projects"),
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_nodes")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_pacs_nodes_project_id")),
    )
    op.create_index(op.f("ix_pacs_nodes_project_id"), "pacs_nodes", ["project_id"])
    op.create_table(
        "pacs_imports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("key_type", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("keys_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("studies_total", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(length=64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("move_message_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_pacs_imports_project_id_projects"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("fk_pacs_imports_dataset_id_datasets"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["node_id"], ["pacs_nodes.id"],
                                name=op.f("fk_pacs_imports_node_id_pacs_nodes"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_imports")),
    )  # fmt: skip
    for column in ("project_id", "dataset_id", "node_id", "move_message_id"):
        op.create_index(op.f(f"ix_pacs_imports_{column}"), "pacs_imports", [column])
    op.create_table(
        "pacs_import_studies",
        sa.Column("import_id", sa.String(length=40), nullable=False),
        sa.Column("key_hmac", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["import_id"], ["pacs_imports.id"], ondelete="CASCADE",
                                name=op.f("fk_pacs_import_studies_import_id_pacs_imports")),
        sa.PrimaryKeyConstraint("import_id", "key_hmac", name=op.f("pk_pacs_import_studies")),
    )  # fmt: skip
    op.create_table(
        "dicom_associations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"],
                                name=op.f("fk_dicom_associations_dataset_id_datasets"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_associations")),
    )  # fmt: skip
    op.create_index(op.f("ix_dicom_associations_dataset_id"), "dicom_associations", ["dataset_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dicom_associations_dataset_id"), table_name="dicom_associations")
    op.drop_table("dicom_associations")
    op.drop_table("pacs_import_studies")
    for column in ("project_id", "dataset_id", "node_id", "move_message_id"):
        op.drop_index(op.f(f"ix_pacs_imports_{column}"), table_name="pacs_imports")
    op.drop_table("pacs_imports")
    op.drop_index(op.f("ix_pacs_nodes_project_id"), table_name="pacs_nodes")
    op.drop_table("pacs_nodes")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_model_versions_dicom_ae_title"), type_="unique")
        batch_op.drop_column("dicom_ae_title")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_datasets_dicom_ae_title"), type_="unique")
        batch_op.drop_column("dicom_ae_title")

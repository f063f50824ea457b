"""Tables for registered models, their versions (manifest, adapter files, status), aliases, batch jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.artifacts import ModelManifest
from platform_core.db.base import Base, TimestampMixin


class RegisteredModel(TimestampMixin, Base):
    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # model_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    latest_number: Mapped[int] = mapped_column(Integer, default=0)


class ModelVersion(TimestampMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # mv_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="SET NULL"))
    epoch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # evaluating | ready | archived
    manifest: Mapped[dict[str, Any]]
    prefix: Mapped[str] = mapped_column(String(300))  # the version's objects: adapter + manifest.json
    adapter_sha256: Mapped[str] = mapped_column(String(64))
    test_auroc: Mapped[float | None] = mapped_column(Float)
    mlflow_version: Mapped[str | None] = mapped_column(String(32))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Trained on images erased since (platform_core.erasure): no alias may point at it.
    data_erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The called AE title a PACS sends studies to for this version's predictions, as a DICOM SR
    # (platform_core.pacs.inference); unique per deployment, with the datasets' titles.
    dicom_ae_title: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)

    @property
    def model_manifest(self) -> ModelManifest:
        """The stored manifest (`manifest`), whatever format it was stored in."""
        return ModelManifest.from_stored(self.manifest)


class ModelAlias(TimestampMixin, Base):
    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # alias_...
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))


class BatchPrediction(TimestampMixin, Base):
    __tablename__ = "batch_predictions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # bpred_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    split_id: Mapped[str] = mapped_column(ForeignKey("splits.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))  # queued | running | succeeded | failed
    output_key: Mapped[str | None] = mapped_column(String(300))
    count: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

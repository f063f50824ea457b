"""Tables for fine-tuning: registered base-model weights, jobs, their events and checkpoints, job groups."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("validating_files", "queued", "running", *TERMINAL)


class BaseModelWeights(TimestampMixin, Base):
    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # bm_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(80))  # a catalog name
    format: Mapped[str] = mapped_column(String(16))  # safetensors | pth
    object_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class JobGroup(TimestampMixin, Base):
    __tablename__ = "fine_tuning_job_groups"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftgrp_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    split_seeds: Mapped[list[Any]]
    request: Mapped[dict[str, Any]]


class Job(TimestampMixin, Base):
    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftjob_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("fine_tuning_job_groups.id", ondelete="SET NULL"), index=True
    )
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    dataset_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    split_id: Mapped[str | None] = mapped_column(ForeignKey("splits.id", ondelete="SET NULL"))
    split_request: Mapped[dict[str, Any] | None]  # {seed, fractions} when the job makes its own split
    # Image ids of the split's training part this job trains on (a data-volume experiment's subset);
    # None: the whole training part. Validation and test stay the split's.
    train_subset: Mapped[list[Any] | None]
    base_model: Mapped[str] = mapped_column(String(80))
    weights: Mapped[str] = mapped_column(String(40))  # pretrained | random | bm_...
    weights_sha256: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[dict[str, Any]]
    hyperparameters: Mapped[dict[str, Any]]  # as requested, "auto" kept
    resolved: Mapped[dict[str, Any] | None]  # every hyperparameter with its value
    checkpoint_metric: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(BigInteger)
    suffix: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    status: Mapped[str] = mapped_column(String(20), index=True)
    progress: Mapped[dict[str, Any] | None]
    best: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    labels: Mapped[list[Any] | None]
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_url: Mapped[str | None] = mapped_column(Text)
    adapter_key: Mapped[str | None] = mapped_column(String(300))
    adapter_sha256: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Some of the images it trained on were erased later (platform_core.erasure); it is not retrained.
    data_erased: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set while the per-project limit on running jobs holds this queued job back (its run message was
    # consumed); a finishing job or the beat sends it again when a slot frees.
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class JobEvent(TimestampMixin, Base):
    __tablename__ = "fine_tuning_job_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftevent_...
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(8))  # info | warn | error
    type: Mapped[str] = mapped_column(String(16))  # message | metrics
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]


class JobCheckpoint(TimestampMixin, Base):
    __tablename__ = "fine_tuning_job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "epoch"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftckpt_...
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    object_prefix: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]]
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)

"""Tables of data-volume experiments: the experiment (its request, status, result) and its runs (one
fine-tuning job per size and seed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from platform_core.db.base import Base, TimestampMixin

STATUSES = ("running", "succeeded", "failed", "cancelled")


class Experiment(TimestampMixin, Base):
    __tablename__ = "fine_tuning_experiments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftexp_...
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))  # data_volume
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    split_id: Mapped[str | None] = mapped_column(ForeignKey("splits.id", ondelete="SET NULL"))
    request: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20))
    result: Mapped[dict[str, Any] | None]
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ExperimentRun(TimestampMixin, Base):
    __tablename__ = "fine_tuning_experiment_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # ftexprun_...
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("fine_tuning_experiments.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str] = mapped_column(
        ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), index=True, unique=True
    )
    size: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)

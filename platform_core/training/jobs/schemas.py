"""Request and response shapes for fine-tuning jobs, job groups and base models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Auto = Literal["auto"]


class LoraIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int | Auto = Field(default="auto")
    alpha: int | Auto = Field(default="auto")
    dropout: float | Auto = Field(default="auto")


class MethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["lora", "full", "linear_probe"] = "lora"
    lora: LoraIn = Field(default_factory=LoraIn)


class HyperparametersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int | Auto = Field(default="auto")
    batch_size: int | Auto = Field(default="auto")
    learning_rate: float | Auto = Field(default="auto")
    weight_decay: float | Auto = Field(default="auto")
    warmup_epochs: float | Auto = Field(default="auto")
    early_stopping_patience: int | None | Auto = Field(default="auto")
    image_size: int | Auto = Field(default="auto")
    augmentation: Literal["none", "light", "standard"] | Auto = Field(default="auto")
    class_weighting: bool | Auto = Field(default="auto")
    gradient_checkpointing: bool | Auto = Field(default="auto")


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    fractions: dict[str, float | str] | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str
    split_id: str | None = None
    split: SplitRequest | None = None
    base_model: str
    weights: str = "pretrained"
    method: MethodIn = Field(default_factory=MethodIn)
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)
    checkpoint_metric: Literal["val_auroc", "val_loss", "val_auprc"] = "val_auroc"
    seed: int | None = None
    suffix: str | None = Field(default=None, max_length=64)
    metadata: dict[str, str] = Field(default_factory=dict)


class JobGroupCreate(JobCreate):
    split_seeds: list[int] = Field(min_length=1, max_length=20)


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class SplitRef(BaseModel):
    id: str | None
    sha256: str | None
    seed: int | None


class JobOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    dataset_id: str
    dataset_version: str | None
    split: SplitRef
    group_id: str | None
    base_model: str
    weights: str
    weights_sha256: str | None
    method: dict[str, Any]
    hyperparameters: dict[str, Any]
    checkpoint_metric: str
    seed: int
    suffix: str | None
    metadata: dict[str, Any]
    labels: list[str] | None
    progress: dict[str, Any] | None
    best: dict[str, Any] | None
    result: dict[str, Any] | None
    error: JobError | None
    mlflow_run_id: str | None
    mlflow_url: str | None
    adapter: dict[str, Any] | None
    attempts: int


class EventOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: datetime
    level: str
    type: str
    message: str
    data: dict[str, Any] | None


class CheckpointOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: datetime
    epoch: int
    step: int
    metrics: dict[str, Any]
    is_best: bool
    sha256: str
    size_bytes: int


class GroupOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job_group"] = "fine_tuning.job_group"
    created_at: datetime
    split_seeds: list[int]
    jobs: list[JobOut]
    status: str
    summary: dict[str, Any]


class BaseModelOut(BaseModel):
    id: str
    object: Literal["base_model"] = "base_model"
    name: str
    architecture: str
    input_size: int | None = None
    family: str | None = None
    description: str | None = None
    weights: str  # what a job's `weights` field takes for this entry
    weights_available: bool
    sha256: str | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None

"""Request and response shapes for fine-tuning jobs, job groups and base models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from platform_core.splits.algorithm import SEED_MAX

Auto = Literal["auto"]
# models.STATUSES, as a type the API validates a filter against.
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]

# Upper bounds on what one job may ask for (a 422 names the field): generous for real work, and a
# typo such as `epochs: 1000000` or `r: 100000` is refused instead of holding a GPU for weeks.
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_LEARNING_RATE = 10.0
MAX_WARMUP_EPOCHS = 100.0
MAX_IMAGE_SIZE = 2048
MAX_LORA_RANK = 512
MAX_LORA_ALPHA = 4096
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]


class _Bounded(BaseModel):
    """One message per field: the bound it broke, not one error per member of `int | "auto"`."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="wrap")
    @classmethod
    def _one_error(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors = [e for e in exc.errors() if value == "auto" or e["type"] != "literal_error"]
            message = (errors or exc.errors())[0]["msg"]
            raise PydanticCustomError("out_of_range", "{message} (or 'auto')", {"message": message}) from None


class LoraIn(_Bounded):
    r: Annotated[int, Field(ge=1, le=MAX_LORA_RANK)] | Auto = Field(default="auto")
    alpha: Annotated[int, Field(ge=1, le=MAX_LORA_ALPHA)] | Auto = Field(default="auto")
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | Auto = Field(default="auto")


class MethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["lora", "full", "linear_probe"] = "lora"
    lora: LoraIn = Field(default_factory=LoraIn)


class HyperparametersIn(_Bounded):
    epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | Auto = Field(default="auto")
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] | Auto = Field(default="auto")
    learning_rate: Annotated[float, Field(ge=0.0, le=MAX_LEARNING_RATE)] | Auto = Field(default="auto")
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] | Auto = Field(default="auto")
    warmup_epochs: Annotated[float, Field(ge=0.0, le=MAX_WARMUP_EPOCHS)] | Auto = Field(default="auto")
    early_stopping_patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None | Auto = Field(default="auto")
    image_size: Annotated[int, Field(ge=16, le=MAX_IMAGE_SIZE)] | Auto = Field(default="auto")
    augmentation: Literal["none", "light", "standard"] | Auto = Field(default="auto")
    class_weighting: bool | Auto = Field(default="auto")
    gradient_checkpointing: bool | Auto = Field(default="auto")


class SplitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: Seed | None = None
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
    seed: Seed | None = None
    suffix: str | None = Field(default=None, max_length=64)
    metadata: dict[str, str] = Field(default_factory=dict)


class JobGroupCreate(JobCreate):
    split_seeds: list[Seed] = Field(min_length=1, max_length=20)


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
    data_erased: bool = False  # images it trained on were erased since; the model is not retrained


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
    group: str | None = None  # "radiography foundation models", "general vision", "tests"
    license: str | None = None
    pretraining: str | None = None  # the data the published weights were pretrained on
    input_convention: str | None = None
    weights_format: str | None = None  # timm, transformers, open_clip, torchxrayvision (safetensors/pth)
    weights_files: list[str] | None = None  # what to bring to POST /v1/base-models without the hub
    weights_source: str | None = None  # where the weights are published
    mean: list[float] | None = None
    std: list[float] | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    created_at: datetime | None = None

"""Request and response shapes for registered models, versions, aliases, predictions and batch jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"


class ModelCreate(BaseModel):
    model_config = {"extra": "forbid"}

    job_id: str
    name: str = Field(pattern=NAME_PATTERN)
    checkpoint: Literal["best"] | int = "best"
    # Decides predictions' `positive`: youden, sensitivity_0.90, specificity_0.95, ... chosen on validation.
    operating_point: str = Field("youden", max_length=40)
    # "temperature": serve temperature-scaled probabilities (T per label fitted on validation).
    calibration: Literal["temperature", "none"] = "none"


class AliasSet(BaseModel):
    model_config = {"extra": "forbid"}

    version: int = Field(ge=1)
    force: bool = False


class VersionOut(BaseModel):
    id: str
    object: Literal["model.version"] = "model.version"
    model: str
    version: int
    ref: str  # name:N
    status: str
    job_id: str | None
    epoch: int
    aliases: list[str]
    test_auroc: float | None
    mlflow_version: str | None
    loaded: bool
    manifest: dict[str, Any]
    created_at: datetime
    archived_at: datetime | None
    data_erased: bool = False  # trained on images erased since: flagged, not retrained; no alias


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    name: str
    latest_version: int
    aliases: dict[str, int]
    created_at: datetime


class ModelDetail(ModelOut):
    serving: VersionOut | None  # what `name` alone resolves to


class Instance(BaseModel):
    model_config = {"extra": "forbid"}

    dicom_base64: str | None = None
    image_base64: str | None = None


class PredictJson(BaseModel):
    model_config = {"extra": "forbid"}

    instances: list[Instance] = Field(min_length=1, max_length=256)


class Prediction(BaseModel):
    probabilities: dict[str, float]
    predicted: dict[str, bool]
    thresholds: dict[str, float]
    positive: dict[str, bool] = Field(default_factory=dict)  # at the version's operating point
    operating_point: dict[str, Any] | None = None  # {name, thresholds} on the returned probabilities' scale
    calibration: str = "none"  # "temperature": the probabilities are temperature-scaled
    heatmap_png_base64: str | None = None


class PredictOut(BaseModel):
    model: str
    version: int
    predictions: list[Prediction]


class BatchCreate(BaseModel):
    model_config = {"extra": "forbid"}

    dataset_id: str
    split_id: str
    split: Literal["train", "val", "test"] = "test"


class BatchOut(BaseModel):
    id: str
    object: Literal["batch_prediction"] = "batch_prediction"
    model: str
    version: int
    dataset_id: str
    split_id: str
    split: str
    status: str
    count: int | None
    metrics: dict[str, Any] | None
    output_key: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

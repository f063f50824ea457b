"""Request and response shapes of data-volume experiments."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from platform_core.jobs.schemas import JobCreate, Seed

MAX_SIZES = 20
MAX_SEEDS = 10
MAX_RUNS = 100  # sizes x seeds: each is a job on the queue


class ExperimentCreate(JobCreate):
    """A job's fields (they apply to every run) plus the sweep. `split_id` is required: every size
    trains on a subset of its training part and is validated and tested on its fixed val and test."""

    type: Literal["data_volume"] = "data_volume"
    sizes: list[int] = Field(min_length=1, max_length=MAX_SIZES)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS)
    balanced: bool = False
    # The labels the balanced subsets are stratified on (default: every label of the dataset).
    labels: list[str] | None = Field(default=None, min_length=1, max_length=100)
    target_auroc: float | None = Field(default=None, gt=0.5, lt=1.0)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        if any(n < 1 for n in sizes):
            raise ValueError("every size must be at least 1 training image")
        if len(set(sizes)) != len(sizes):
            raise ValueError("sizes repeat a size")
        return sorted(sizes)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds repeat a seed")
        return seeds


class RunOut(BaseModel):
    size: int
    seed: int
    job_id: str
    status: str


class ExperimentOut(BaseModel):
    id: str
    object: Literal["fine_tuning.experiment"] = "fine_tuning.experiment"
    type: str
    created_at: datetime
    finished_at: datetime | None
    status: str
    dataset_id: str
    split_id: str | None
    sizes: list[int]
    seeds: list[int]
    balanced: bool
    labels: list[str] | None
    base_model: str
    runs: list[RunOut]
    result: dict[str, Any] | None
    target: dict[str, Any] | None  # samples needed for target_auroc (query or the create body)
    figures: dict[str, str]  # name -> URL path of the PNG
    mlflow_run_id: str | None

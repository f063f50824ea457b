"""Request and response shapes for dataset versions and splits."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from platform_core.splits.algorithm import SEED_MAX


class FractionsIn(BaseModel):
    model_config = {"extra": "forbid"}

    train: float = Field(gt=0, lt=1)
    val: float = Field(gt=0, lt=1)
    test: float = Field(gt=0, lt=1)


class SplitCreate(BaseModel):
    """A seeded split (seed and fractions optional) or the labels CSV's own column ({"column": "split"})."""

    model_config = {"extra": "forbid"}

    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    fractions: FractionsIn | None = None
    column: Literal["split"] | None = None
    dataset_version: str | None = Field(
        None, description="split this frozen version instead of the current data"
    )


class LabelSplitCounts(BaseModel):
    positive: int
    negative: int
    positive_patients: int


class SplitCounts(BaseModel):
    patients: int
    studies: int
    images: int
    labels: dict[str, LabelSplitCounts]


class SplitOut(BaseModel):
    id: str
    object: Literal["split"] = "split"
    dataset_id: str
    dataset_version: str
    source: Literal["seeded", "column"]
    seed: int | None
    seed_drawn: bool
    fractions: dict[str, float] | None
    algorithm: str
    sha256: str
    counts: dict[str, SplitCounts]
    erased_members: int = 0  # images of the manifest erased since; sha256 is of the manifest as made
    created_at: datetime


class VersionOut(BaseModel):
    id: str
    object: Literal["dataset_version"] = "dataset_version"
    dataset_id: str
    number: int
    content_sha256: str
    task: str
    labels: list[str]
    images: int
    studies: int
    patients: int
    erased_members: int = 0  # images of the version erased since it was frozen
    created_at: datetime

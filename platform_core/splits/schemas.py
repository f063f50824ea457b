"""Request and response shapes for dataset versions and splits."""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, Field

from platform_core.splits.algorithm import SEED_MAX, SPLITS
from platform_core.splits.models import DatasetVersion, Split


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

    @classmethod
    def of(cls, split: Split) -> SplitOut:
        fractions = None
        if split.fractions is not None:
            fractions = {k: float(Fraction(v)) for k, v in split.fractions.items()}
        return cls(
            id=split.id,
            dataset_id=split.dataset_id,
            dataset_version=split.dataset_version_id,
            source="column" if split.source == "column" else "seeded",
            seed=split.seed,
            seed_drawn=split.seed_drawn,
            fractions=fractions,
            algorithm=split.algorithm,
            sha256=split.sha256,
            # JSONB does not keep key order: give train, val, test and labels by name.
            counts={
                k: SplitCounts.model_validate(
                    {**split.counts[k], "labels": dict(sorted(split.counts[k]["labels"].items()))}
                )
                for k in SPLITS
                if k in split.counts
            },
            erased_members=split.erased_members,
            created_at=split.created_at,
        )


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

    @classmethod
    def of(cls, v: DatasetVersion) -> VersionOut:
        return cls(
            id=v.id,
            dataset_id=v.dataset_id,
            number=v.number,
            content_sha256=v.content_sha256,
            task=v.task,
            labels=[str(n) for n in v.label_names],
            images=v.image_count,
            studies=v.study_count,
            patients=v.patient_count,
            erased_members=v.erased_members,
            created_at=v.created_at,
        )

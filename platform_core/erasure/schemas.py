"""Request and response shapes for erasures: counts and pseudonyms, never an original value."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PatientErasureCreate(BaseModel):
    """The original PatientID as the hospital knows it; matched by HMAC, never stored or echoed."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(min_length=1, max_length=256, repr=False)


class Removed(BaseModel):
    """What one erasure removed (rows, objects, artifacts) and what it marked (versions, jobs)."""

    images: int = 0
    studies: int = 0
    labels: int = 0
    objects: int = 0
    mlflow_artifacts: int = 0
    dataset_versions_marked: int = 0
    splits_marked: int = 0
    jobs_marked: int = 0
    model_versions_marked: int = 0

    def add(self, other: Removed) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class ErasureOut(BaseModel):
    id: str
    object: Literal["erasure"] = "erasure"
    kind: Literal["image", "dataset", "patient"]
    target: str  # the image id, the dataset id, or the patient's pseudonym
    dataset_id: str | None
    removed: Removed
    created_at: datetime

    def audit_details(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "removed": self.removed.model_dump()}

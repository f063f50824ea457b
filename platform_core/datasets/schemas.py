"""Request and response shapes for datasets, uploads, labels and images."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class DatasetOptions(BaseModel):
    model_config = {"extra": "forbid"}

    min_image_size: int = Field(128, ge=1, le=8192)
    modalities: list[str] = Field(default_factory=lambda: ["CR", "DX"], min_length=1)
    cache_size: int = Field(512, ge=16, le=4096)
    # PS3.15 retain options (platform_core.dicom.deid): dates shifted per patient, removed, or kept whole.
    dates: Literal["shift", "remove", "keep"] = "shift"
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_safe_private: bool = False  # only the private attributes listed in deid-safe-private.json
    burned_in_annotation: Literal["reject", "accept"] = "reject"
    # OCR the pixels and reject an image whose text is one of its own header's identifying values.
    burned_in_text: Literal["screen", "off"] = "screen"

    @field_validator("modalities")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return sorted({m.strip().upper() for m in v if m.strip()})


class DatasetCreate(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=200)
    task: Literal["binary", "multilabel"]
    labels: list[str] = Field(min_length=1, max_length=200)
    options: DatasetOptions = Field(default_factory=DatasetOptions)
    # The called AE title a PACS C-STOREs to for this dataset (unique per deployment; platform_core.pacs).
    dicom_ae_title: str | None = Field(None, pattern=r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$", max_length=16)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        names = [x.strip() for x in v]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("labels must be distinct, non-empty names")
        return names


class LabelCounts(BaseModel):
    positives: int
    negatives: int


class Counts(BaseModel):
    received: int
    accepted: int
    rejected: dict[str, int]
    duplicates: int
    pending: int
    studies: int
    patients: int
    labelled_studies: int
    labels: dict[str, LabelCounts]


class DatasetOut(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str
    task: str
    labels: list[str]
    options: DatasetOptions
    dicom_ae_title: str | None = None
    status: Literal["ingesting", "ready"]
    counts: Counts
    created_at: datetime


class FileOutcome(BaseModel):
    index: int
    filename: str  # echoed in this response only, never stored: file names carry patient names
    outcome: Literal["queued", "duplicate", "rejected"]
    reason: str | None = None
    image_id: str | None = None
    message: str | None = None  # for a file over a cap (too_large, too_many_members): which limit


class UploadResult(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileOutcome]


class RowError(BaseModel):
    row: int
    column: str | None
    message: str


class LabelImport(BaseModel):
    rows: int
    imported: int
    matched: int
    unmatched: int
    errors: list[RowError]


class ImageOut(BaseModel):
    id: str
    object: Literal["image"] = "image"
    status: str
    reason: str | None
    source: str
    study_pseudonym: str | None
    patient_pseudonym: str | None
    sop_instance_uid_pseudonym: str | None
    labels: dict[str, int] | None
    rows: int | None
    columns: int | None
    size_bytes: int | None
    modality: str | None
    body_part: str | None
    view_position: str | None
    pixel_sha256: str | None
    created_at: datetime

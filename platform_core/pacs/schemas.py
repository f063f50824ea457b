"""Request and response shapes for PACS nodes, imports and the listener's associations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

AE_PATTERN = r"^[ -\[\]-~]{1,16}$"  # DICOM AE: 16 printable characters, no backslash


class PacsAuth(BaseModel):
    model_config = {"extra": "forbid"}

    type: Literal["none", "bearer", "basic"] = "none"
    token: str | None = Field(None, max_length=4096)
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=1000)

    @model_validator(mode="after")
    def _complete(self) -> PacsAuth:
        if self.type == "bearer" and not self.token:
            raise ValueError("bearer auth needs a token")
        if self.type == "basic" and not (self.username and self.password is not None):
            raise ValueError("basic auth needs a username and a password")
        return self


class PacsNodeCreate(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["dicomweb", "dimse"]
    url: str | None = Field(None, max_length=500, pattern=r"^https?://")  # dicomweb: base URL
    host: str | None = Field(None, max_length=255)  # dimse
    port: int | None = Field(None, ge=1, le=65535)
    ae_title: str | None = Field(None, pattern=AE_PATTERN)  # dimse: the peer's AE title
    auth: PacsAuth = Field(default_factory=PacsAuth)

    @model_validator(mode="after")
    def _address(self) -> PacsNodeCreate:
        if self.kind == "dicomweb" and not self.url:
            raise ValueError("a dicomweb node needs a url")
        if self.kind == "dimse" and not (self.host and self.port and self.ae_title):
            raise ValueError("a dimse node needs host, port and ae_title")
        return self


class PacsNodeOut(BaseModel):
    id: str
    object: Literal["pacs_node"] = "pacs_node"
    name: str
    kind: str
    url: str | None
    host: str | None
    port: int | None
    ae_title: str | None
    auth_type: str  # the secret itself is never returned
    created_at: datetime


class ImportCreate(BaseModel):
    """JSON body of POST /v1/datasets/{id}/imports (a labels CSV comes as multipart instead)."""

    model_config = {"extra": "forbid"}

    node_id: str = Field(min_length=1, max_length=40)
    study_instance_uids: list[str] | None = Field(None, min_length=1, max_length=100_000)
    accession_numbers: list[str] | None = Field(None, min_length=1, max_length=100_000)

    @model_validator(mode="after")
    def _one_query(self) -> ImportCreate:
        if (self.study_instance_uids is None) == (self.accession_numbers is None):
            raise ValueError("send either study_instance_uids or accession_numbers")
        return self


class StudyOutcome(BaseModel):
    key_hmac: str  # HMAC of the original key; the key itself is never stored
    status: Literal["pending", "done", "not_found", "failed"]
    instances: int
    queued: int
    duplicates: int
    rejected: int
    error: str | None


class ImportProgress(BaseModel):
    studies_total: int
    studies_done: int
    studies_not_found: int
    studies_failed: int
    instances: int
    queued: int
    duplicates: int
    rejected: int


class ImportOut(BaseModel):
    id: str
    object: Literal["pacs_import"] = "pacs_import"
    dataset_id: str
    node_id: str
    key_type: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: ImportProgress
    studies: list[StudyOutcome]
    labels: dict[str, int] | None = None  # the label import of a CSV: rows, imported, matched
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class AssociationOut(BaseModel):
    id: str
    object: Literal["dicom_association"] = "dicom_association"
    calling_ae_title: str
    status: str
    received: int
    queued: int
    duplicates: int
    rejected: int
    created_at: datetime
    ended_at: datetime | None


class InferenceAeSet(BaseModel):
    """PUT /v1/models/{name}/versions/{number}/dicom-ae-title: null unbinds."""

    model_config = {"extra": "forbid"}

    ae_title: str | None = Field(pattern=AE_PATTERN)


class InferenceAeOut(BaseModel):
    object: Literal["inference_ae"] = "inference_ae"
    model: str
    version: int
    dicom_ae_title: str | None

"""Typed responses of the PACS endpoints: source nodes (their secrets never come back) and imports with
their per-study outcomes (original keys never come back either: each study is named by its HMAC)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from medtune.models import Resource


class PacsNode(Resource):
    id: str
    object: str = "pacs_node"
    name: str
    kind: str  # dicomweb | dimse
    url: str | None = None
    host: str | None = None
    port: int | None = None
    ae_title: str | None = None
    auth_type: str = "none"  # none | bearer | basic
    created_at: datetime | None = None


class StudyOutcome(Resource):
    key_hmac: str
    status: str  # pending | done | not_found | failed
    instances: int = 0
    queued: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: str | None = None


class ImportProgress(Resource):
    studies_total: int = 0
    studies_done: int = 0
    studies_not_found: int = 0
    studies_failed: int = 0
    instances: int = 0
    queued: int = 0
    duplicates: int = 0
    rejected: int = 0


class PacsImport(Resource):
    id: str
    object: str = "pacs_import"
    dataset_id: str
    node_id: str
    key_type: str = ""  # StudyInstanceUID | AccessionNumber
    status: str  # queued | running | succeeded | failed | cancelled
    progress: ImportProgress = Field(default_factory=ImportProgress)
    studies: list[StudyOutcome] = Field(default_factory=list)
    labels: dict[str, int] | None = None  # the label import of a labels CSV
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

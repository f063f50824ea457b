"""Request and response bodies of the project, its API keys and its audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from platform_core.auth.scopes import ALL_SCOPES


class ProjectOut(BaseModel):
    id: str
    name: str
    key_id: str
    scopes: list[str]


class AuditOut(BaseModel):
    id: str
    key_id: str | None
    action: str
    resource_type: str
    resource_id: str | None
    request_id: str | None
    details: dict[str, Any] | None = None
    created_at: datetime


class KeyCreate(BaseModel):
    name: str = Field(default="", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES), min_length=1)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="the API key; shown once, stored only as a hash")

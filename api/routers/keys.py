"""API keys of the caller's project: create (shown once), list, revoke. Admin scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import AuditDep, JsonOnly, SessionDep, require
from api.pagination import Page
from platform_core.auth import service
from platform_core.auth.scopes import ALL_SCOPES, Scope
from platform_core.auth.service import Principal

router = APIRouter(prefix="/api-keys", tags=["api keys"], dependencies=[JsonOnly])
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


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


@router.post("", status_code=201)
def create_key(body: KeyCreate, session: SessionDep, principal: Admin, audit: AuditDep) -> KeyCreated:
    project = service.get_project(session, principal.project_id)
    key, raw = service.create_key(session, project, body.scopes, body.name)
    audit("api_key.create", "api_key", key.id)
    return KeyCreated(**KeyOut.model_validate(key, from_attributes=True).model_dump(), key=raw)


@router.get("")
def list_keys(
    session: SessionDep,
    principal: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: str | None = None,
) -> Page[KeyOut]:
    keys = service.list_keys(session, principal.project_id, limit + 1, after)
    return Page.build([KeyOut.model_validate(k, from_attributes=True) for k in keys], limit)


@router.get("/{key_id}")
def get_key(key_id: str, session: SessionDep, principal: Admin) -> KeyOut:
    return KeyOut.model_validate(service.get_key(session, principal.project_id, key_id), from_attributes=True)


@router.delete("/{key_id}")
def revoke_key(key_id: str, session: SessionDep, principal: Admin, audit: AuditDep) -> KeyOut:
    key = service.revoke_key(session, principal.project_id, key_id)
    audit("api_key.revoke", "api_key", key.id)
    return KeyOut.model_validate(key, from_attributes=True)

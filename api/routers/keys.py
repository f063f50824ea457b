"""API keys of the caller's project: create (shown once), list, revoke. Admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import AuditDep, JsonOnly, SessionDep, require
from platform_core.auth import service, views
from platform_core.auth.schemas import KeyCreate, KeyCreated, KeyOut
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.pagination import Page

router = APIRouter(prefix="/api-keys", tags=["api keys"], dependencies=[JsonOnly])
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


@router.post("", status_code=201)
def create_key(body: KeyCreate, session: SessionDep, principal: Admin, audit: AuditDep) -> KeyCreated:
    project = service.get_project(session, principal.project_id)
    key, raw = service.create_key(session, project, body.scopes, body.name)
    audit("api_key.create", "api_key", key.id)
    return views.key_created(key, raw)


@router.get("")
def list_keys(
    session: SessionDep,
    principal: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: str | None = None,
) -> Page[KeyOut]:
    return views.list_keys(session, principal.project_id, limit, after)


@router.get("/{key_id}")
def get_key(key_id: str, session: SessionDep, principal: Admin) -> KeyOut:
    return views.key_out(service.get_key(session, principal.project_id, key_id))


@router.delete("/{key_id}")
def revoke_key(key_id: str, session: SessionDep, principal: Admin, audit: AuditDep) -> KeyOut:
    key = service.revoke_key(session, principal.project_id, key_id)
    audit("api_key.revoke", "api_key", key.id)
    return views.key_out(key)

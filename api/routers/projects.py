"""The caller's own project: who am I, and the audit trail of its writes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import SessionDep, require
from platform_core.auth import service
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal

router = APIRouter(tags=["projects"])


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


class AuditPage(BaseModel):
    data: list[AuditOut]
    has_more: bool


@router.get("/project")
def whoami(
    session: SessionDep, principal: Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
) -> ProjectOut:
    project = service.get_project(session, principal.project_id)
    return ProjectOut(
        id=project.id, name=project.name, key_id=principal.key_id, scopes=sorted(principal.scopes)
    )


@router.get("/audit-events")
def audit_events(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Scope.ADMIN))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    events = service.list_audit(session, principal.project_id, limit + 1)
    return AuditPage(
        data=[AuditOut.model_validate(e, from_attributes=True) for e in events[:limit]],
        has_more=len(events) > limit,
    )

"""The caller's own project: who am I, and the audit trail of its writes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import SessionDep, require
from platform_core.auth import views
from platform_core.auth.schemas import AuditOut, ProjectOut
from platform_core.auth.scopes import Scope
from platform_core.auth.service import Principal
from platform_core.pagination import Page

router = APIRouter(tags=["projects"])


@router.get("/project")
def whoami(
    session: SessionDep, principal: Annotated[Principal, Depends(require(Scope.DATASETS_READ))]
) -> ProjectOut:
    return views.project_out(session, principal)


@router.get("/audit-events")
def audit_events(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require(Scope.ADMIN))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: str | None = None,
) -> Page[AuditOut]:
    """Newest first; `after` pages towards older events."""
    return views.list_audit(session, principal.project_id, limit, after)

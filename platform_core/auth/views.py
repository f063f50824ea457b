"""The caller's project, its API keys and its audit trail as the API shows them, and their pages."""

from __future__ import annotations

from sqlalchemy.orm import Session

from platform_core.auth import repository, service
from platform_core.auth.models import ApiKey, AuditEvent
from platform_core.auth.schemas import AuditOut, KeyCreated, KeyOut, ProjectOut
from platform_core.auth.service import Principal
from platform_core.pagination import Page


def project_out(session: Session, principal: Principal) -> ProjectOut:
    project = service.get_project(session, principal.project_id)
    return ProjectOut(
        id=project.id, name=project.name, key_id=principal.key_id, scopes=sorted(principal.scopes)
    )


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(key, from_attributes=True)


def key_created(key: ApiKey, raw: str) -> KeyCreated:
    return KeyCreated(**key_out(key).model_dump(), key=raw)


def audit_out(event: AuditEvent) -> AuditOut:
    return AuditOut.model_validate(event, from_attributes=True)


def list_keys(session: Session, project_id: str, limit: int, after: str | None) -> Page[KeyOut]:
    """Oldest first; `after` pages towards newer keys."""
    return Page.build(repository.list_keys(session, project_id, limit + 1, after), limit, key_out)


def list_audit(session: Session, project_id: str, limit: int, after: str | None) -> Page[AuditOut]:
    """Newest first; `after` pages towards older events."""
    return Page.build(repository.list_audit(session, project_id, limit + 1, after), limit, audit_out)

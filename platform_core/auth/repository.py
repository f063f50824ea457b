"""Queries for projects, API keys and audit events; the service decides, this reads and writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from platform_core.auth.models import ApiKey, AuditEvent, Project
from platform_core.ids import new_id


def get_project(session: Session, project_id: str) -> Project | None:
    return session.get(Project, project_id)


def lock_project(session: Session, project_id: str) -> None:
    """Row-lock the project: the jobs scheduler counts its running jobs under it."""
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update())


def project_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def key_by_hash(session: Session, digest: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))


def list_keys(session: Session, project_id: str, limit: int, after: str | None) -> Sequence[ApiKey]:
    """Oldest first; `after` keeps the newer ones."""
    q = select(ApiKey).where(ApiKey.project_id == project_id)
    if after:
        q = q.where(ApiKey.id > after)
    return session.scalars(q.order_by(ApiKey.id).limit(limit)).all()


def list_audit(session: Session, project_id: str, limit: int, after: str | None) -> Sequence[AuditEvent]:
    """Newest first; `after` keeps the older ones."""
    q = select(AuditEvent).where(AuditEvent.project_id == project_id)
    if after:
        q = q.where(AuditEvent.id < after)
    return session.scalars(q.order_by(AuditEvent.id.desc()).limit(limit)).all()


def add_audit_event(
    session: Session, project_id: str, action: str, resource_type: str, resource_id: str | None, **fields: Any
) -> None:
    """fields: key_id, request_id, details (counts and pseudonyms only, never a value from a request)."""
    session.add(
        AuditEvent(
            id=new_id("aud"),
            project_id=project_id,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            **fields,
        )
    )

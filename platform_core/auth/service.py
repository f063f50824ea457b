"""Create projects and keys, authenticate a presented key, record audit events; queries live in
repository.py, responses in views.py."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from platform_core.auth import repository
from platform_core.auth.models import ApiKey, Project
from platform_core.auth.scopes import ALL_SCOPES, parse_scopes
from platform_core.db.base import utcnow
from platform_core.errors import Conflict, Forbidden, NotFound, Unauthenticated
from platform_core.ids import new_id

KEY_PREFIX = "mt_"


@dataclass(frozen=True)
class Principal:
    project_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


def hash_key(raw: str) -> str:
    # Keys carry 256 random bits, so a plain digest is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def create_project(session: Session, name: str) -> Project:
    if repository.project_by_name(session, name) is not None:
        raise Conflict(f"project '{name}' already exists", param="name")
    project = Project(id=new_id("proj"), name=name)
    session.add(project)
    session.flush()
    return project


def get_project_by_name(session: Session, name: str) -> Project:
    project = repository.project_by_name(session, name)
    if project is None:
        raise NotFound(f"no project named '{name}'")
    return project


def create_key(
    session: Session, project: Project, scopes: list[str] | None = None, name: str = ""
) -> tuple[ApiKey, str]:
    """Return the key record and the raw key, which is shown once and never stored."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        project_id=project.id,
        name=name,
        prefix=raw[:10],
        key_hash=hash_key(raw),
        scopes=parse_scopes(scopes if scopes is not None else ALL_SCOPES),
    )
    session.add(key)
    session.flush()
    return key, raw


def authenticate(session: Session, raw: str | None) -> Principal:
    if not raw:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer mt_...'")
    digest = hash_key(raw)
    key = repository.key_by_hash(session, digest)
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        raise Unauthenticated("invalid or revoked API key")
    return Principal(project_id=key.project_id, key_id=key.id, scopes=frozenset(key.scopes))


def key_active(session: Session, key_id: str) -> bool:
    """Whether a key still authenticates: not revoked, not deleted with its project."""
    key = repository.get_key(session, key_id)
    return (
        key is not None
        and key.revoked_at is None
        and repository.get_project(session, key.project_id) is not None
    )


def record_audit(
    session: Session,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str | None,
    request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """details: counts and pseudonyms only, never a value from a request."""
    repository.add_audit_event(
        session,
        principal.project_id,
        action,
        resource_type,
        resource_id,
        key_id=principal.key_id,
        request_id=request_id,
        details=details,
    )


def get_project(session: Session, project_id: str) -> Project:
    project = repository.get_project(session, project_id)
    if project is None:
        raise NotFound("project not found")
    return project


def get_key(session: Session, project_id: str, key_id: str) -> ApiKey:
    key = repository.get_key(session, key_id)
    # Another project's key is indistinguishable from a missing one.
    if key is None or key.project_id != project_id:
        raise NotFound(f"no API key '{key_id}'")
    return key


def revoke_key(session: Session, project_id: str, key_id: str) -> ApiKey:
    key = get_key(session, project_id, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key

"""The schema built by `alembic upgrade head` on SQLite and PostgreSQL; projects and hashed keys."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from platform_core.auth import service
from platform_core.auth.models import ApiKey, Project
from platform_core.errors import Conflict, Unauthenticated

pytestmark = pytest.mark.services


def test_keys_are_stored_only_as_hashes(any_sessions: sessionmaker[Session]) -> None:
    with any_sessions() as s:
        project = service.create_project(s, "radiology")
        key, raw = service.create_key(s, project, ["datasets:read"])
        s.commit()
        assert raw.startswith("mt_") and len(raw) > 40
        stored = s.scalar(select(ApiKey).where(ApiKey.id == key.id))
        assert stored is not None
        assert raw not in (stored.key_hash, stored.prefix, stored.name)
        assert stored.key_hash == service.hash_key(raw)
        dump = " ".join(str(v) for row in s.execute(text("SELECT * FROM api_keys")) for v in row)
        assert raw not in dump
        principal = service.authenticate(s, raw)
        assert principal.project_id == project.id
        assert principal.scopes == frozenset({"datasets:read"})


def test_unknown_and_missing_keys_are_refused(any_sessions: sessionmaker[Session]) -> None:
    with any_sessions() as s:
        with pytest.raises(Unauthenticated):
            service.authenticate(s, "mt_not-a-key")
        with pytest.raises(Unauthenticated):
            service.authenticate(s, None)


def test_project_names_are_unique(any_sessions: sessionmaker[Session]) -> None:
    with any_sessions() as s:
        service.create_project(s, "dup")
        with pytest.raises(Conflict):
            service.create_project(s, "dup")


def test_each_test_rolls_back(any_sessions: sessionmaker[Session]) -> None:
    with any_sessions() as s:
        assert s.scalar(select(Project).where(Project.name.in_(["radiology", "dup"]))) is None

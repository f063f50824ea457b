"""The schema built by `alembic upgrade head` on SQLite and PostgreSQL; projects and hashed keys."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from platform_core.auth import service
from platform_core.auth.models import ApiKey, Project
from platform_core.db.migrate import upgrade
from platform_core.db.session import make_engine, make_sessionmaker, read_only, unit_of_work
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


def test_sqlite_writers_that_read_first_do_not_fail_under_concurrency(tmp_path: Path) -> None:
    # Embedded mode: API and worker are separate processes on one SQLite file. A transaction that reads,
    # then writes after another connection committed, must wait for the lock, not fail.
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    writers = make_sessionmaker(engine)
    readers = make_sessionmaker(read_only(engine))
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                with unit_of_work(writers) as s:
                    s.scalar(select(func.count()).select_from(Project))  # read first...
                    time.sleep(0.001)
                    service.create_project(s, f"w{worker}-{i}")  # ...then write
                with readers() as s:
                    s.scalar(select(func.count()).select_from(Project))
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with readers() as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 75
    engine.dispose()

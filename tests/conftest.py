"""Fixtures on real infrastructure: PostgreSQL and SQLite built by `alembic upgrade head`, each test
rolled back; a real S3 server (moto's server mode); Redis; real Celery worker processes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings
from platform_core.db.migrate import upgrade
from platform_core.db.outbox import TaskMessage
from platform_core.db.session import make_engine
from tests.services import REDIS_URL, create_pg_database, drop_pg_database, free_port, unavailable, wait_for

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


# --- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'medtune.sqlite'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def _rolled_back(engine: Engine) -> Iterator[sessionmaker[Session]]:
    with engine.connect() as conn:
        outer = conn.begin()
        # Commits inside the code under test release savepoints; the outer transaction rolls back.
        yield sessionmaker(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        outer.rollback()


@pytest.fixture
def sessions(pg_engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on PostgreSQL whose work is rolled back after the test."""
    yield from _rolled_back(pg_engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_sessions(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """The same test on SQLite (embedded mode) and PostgreSQL (deployed mode)."""
    engine: Engine = request.getfixturevalue(f"{'pg' if request.param == 'postgresql' else 'sqlite'}_engine")
    yield from _rolled_back(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as s:
        yield s


# --- object stores, redis -------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable("S3 server (moto[server])", exc)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import httpx

        wait_for(lambda: httpx.get(endpoint, timeout=1).status_code < 500, 15, what="moto server")
    except TimeoutError as exc:
        unavailable("S3 server (moto)", exc)
    yield endpoint
    server.stop()


S3_CREDS = {"MEDTUNE_S3_ACCESS_KEY_ID": "testing", "MEDTUNE_S3_SECRET_ACCESS_KEY": "testing",
            "MEDTUNE_S3_REGION": "us-east-1"}  # fmt: skip


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    import boto3

    name = f"medtune-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=name)  # fmt: skip
    return name


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        unavailable("Redis", exc)
    return REDIS_URL


# --- settings and the API -------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        deid_secret="test-secret-" + secrets.token_hex(16),
        broker_url="memory://",
        result_backend="cache+memory://",
        max_request_bytes=64 * 1024 * 1024,
    )


class Outbox(list[TaskMessage]):
    """Tasks the API sent after commit, for tests that check what was queued."""


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def app_state(settings: Settings, sessions: sessionmaker[Session], outbox: Outbox) -> Any:
    from api.app import build_state

    state = build_state(settings, dispatch=outbox.append)
    state.sessions = state.read_sessions = sessions
    return state


@pytest.fixture
def client(app_state: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(state=app_state)) as c:
        yield c


@pytest.fixture
def project_key(sessions: sessionmaker[Session]) -> tuple[str, str]:
    """A project with an all-scopes key: (project_id, raw key)."""
    from platform_core.auth import service

    with sessions() as s:
        project = service.create_project(s, f"p-{secrets.token_hex(4)}")
        _key, raw = service.create_key(s, project)
        s.commit()
        return project.id, raw


@pytest.fixture
def auth(project_key: tuple[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {project_key[1]}"}

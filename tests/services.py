"""Reaching the real services tests need; under MEDTUNE_REQUIRE_SERVICES=1 absence fails, not skips."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get("MEDTUNE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MEDTUNE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parents[1]


def services_required() -> bool:
    return os.environ.get("MEDTUNE_REQUIRE_SERVICES") == "1"


def unavailable(what: str, why: object) -> None:
    message = f"{what} unavailable: {why}"
    if services_required():
        pytest.fail(f"{message} (MEDTUNE_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def create_pg_database(prefix: str = "medtune_test") -> str:
    """A new, empty PostgreSQL database of its own; its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the service may not be up yet
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Terminate a server the test started; kill it if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class WorkerProcess:
    """A real `celery worker` subprocess with the given MEDTUNE_* environment."""

    def __init__(self, env: dict[str, str], log: Path, queues: str = "ingest,train,infer") -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.queues = queues
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        argv = [
            sys.executable, "-m", "celery", "-A", "worker.app:celery_app", "worker", "-Q", self.queues,
            "--concurrency", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            "--hostname", f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]  # fmt: skip
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        return self

    def stop(self, sig: int = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def redis_worker_stack(
    tmp_path: Path, pg_url: str, redis_url: str, prefix: str
) -> tuple[dict[str, str], Any]:
    """The MEDTUNE_* environment of a real worker process and the same Settings for an API in this one:
    committed PostgreSQL, a file object store, and a Redis database of its own, so that workers of
    other test runs do not take these tasks."""
    import random

    from platform_core.config import Settings

    broker = f"{redis_url.rstrip('/')}/{random.randint(1, 15)}"
    env = {
        "MEDTUNE_DATA_DIR": str(tmp_path / "data"),
        "MEDTUNE_DATABASE_URL": pg_url,
        "MEDTUNE_OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}",
        "MEDTUNE_BROKER_URL": broker,
        "MEDTUNE_RESULT_BACKEND": broker,
        "MEDTUNE_DEID_SECRET": f"{prefix}-" + secrets.token_hex(16),
    }
    settings = Settings(
        data_dir=tmp_path / "data", database_url=pg_url, object_store_url=env["MEDTUNE_OBJECT_STORE_URL"],
        broker_url=broker, result_backend=broker, deid_secret=env["MEDTUNE_DEID_SECRET"],
    )  # fmt: skip
    return env, settings


@dataclass
class IngestStack:
    client: Any  # a fastapi TestClient of the API app
    auth: dict[str, str]
    state: Any  # the app's AppState: sessions and store, for what the API does not show
    worker: WorkerProcess


@contextmanager
def api_with_ingest_worker(tmp_path: Path, pg_url: str, redis_url: str, prefix: str) -> Iterator[IngestStack]:
    """The API app in this process and a real `ingest` worker process, on Redis and PostgreSQL."""
    from fastapi.testclient import TestClient

    from api.app import build_state, create_app

    env, settings = redis_worker_stack(tmp_path, pg_url, redis_url, prefix)
    state = build_state(settings)
    auth = bearer(state, prefix)
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="ingest").start()
    try:
        with TestClient(create_app(state=state)) as client:
            yield IngestStack(client, auth, state, worker)
    finally:
        worker.stop()
        state.engine.dispose()


def bearer(state: Any, prefix: str) -> dict[str, str]:
    """The Authorization header of an all-scopes key of a new project, committed."""
    from platform_core.auth import service

    with state.sessions() as s:
        project = service.create_project(s, f"{prefix}-{secrets.token_hex(4)}")
        _key, raw = service.create_key(s, project)
        s.commit()
    return {"Authorization": f"Bearer {raw}"}

"""A real `celery worker` process consumes and answers, on Redis and on the embedded broker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.config import Settings
from tests.services import WorkerProcess
from worker.app import make_celery

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _env(settings: Settings) -> dict[str, str]:
    return {
        "MEDTUNE_DATA_DIR": str(settings.data_dir),
        "MEDTUNE_BROKER_URL": settings.broker_url or "",
        "MEDTUNE_RESULT_BACKEND": settings.result_backend or "",
    }


@pytest.fixture(params=["redis", "embedded"])
def broker_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        # A database of its own per run keeps queues from other runs out of the way.
        db = 8 + secrets.randbelow(7)
        return Settings(data_dir=tmp_path, broker_url=f"{url}/{db}", result_backend=f"{url}/{db}")
    return Settings(data_dir=tmp_path)


@pytest.fixture
def worker(broker_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(_env(broker_settings), tmp_path / "worker.log").start()
    yield proc
    proc.stop()


def test_ping_round_trips_through_a_worker_process(broker_settings: Settings, worker: WorkerProcess) -> None:
    app = make_celery(broker_settings)
    result = app.send_task("system.ping", queue="ingest")
    try:
        answer = result.get(timeout=60)
    except Exception:
        pytest.fail(f"no answer from the worker; its log:\n{worker.output()[-3000:]}")
    assert answer["pong"] is True
    assert worker.proc is not None and answer["pid"] != worker.proc.pid  # a prefork child ran it


def test_worker_settings_are_json_only_with_late_acks(broker_settings: Settings) -> None:
    conf = make_celery(broker_settings).conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == {"ingest", "train", "infer"}
    # The beat that requeues jobs of vanished workers (stale heartbeat) has its entry.
    assert conf.beat_schedule["requeue-stale-jobs"]["task"] == "train.requeue_stale"
    if (broker_settings.broker_url or "").startswith("redis"):
        assert conf.broker_transport_options["visibility_timeout"] == 48 * 3600

"""The task table matches the worker: every spec is registered, every registered task has a spec, and
every deployment consumes every spec's queue (compose and `medtune up`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medtune.cli.supervisor import embedded_workers
from platform_core import tasks
from worker.app import celery_app

ROOT = Path(__file__).resolve().parents[2]


def _registered() -> set[str]:
    celery_app.loader.import_default_modules()
    return {name for name in celery_app.tasks if not name.startswith("celery.")}


def test_every_spec_is_a_registered_task_and_back() -> None:
    specs = {spec.name for spec in tasks.ALL}
    assert len(specs) == len(tasks.ALL)
    assert specs == _registered()


def test_every_spec_queue_is_a_declared_queue() -> None:
    declared = {queue.name for queue in celery_app.conf.task_queues}
    assert {spec.queue for spec in tasks.ALL} <= declared
    for entry in celery_app.conf.beat_schedule.values():
        spec = next(s for s in tasks.ALL if s.name == entry["task"])
        assert entry["options"]["queue"] == spec.queue


def _compose_queues() -> set[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    queues: set[str] = set()
    for service in compose["services"].values():
        for arg in service.get("command") or []:
            if str(arg).startswith("--queues="):
                queues.update(str(arg).removeprefix("--queues=").split(","))
    return queues


def test_compose_workers_consume_every_queue() -> None:
    assert {spec.queue for spec in tasks.ALL} <= _compose_queues()


def test_embedded_workers_consume_every_queue(tmp_path: Path) -> None:
    queues: set[str] = set()
    for argv in embedded_workers(tmp_path / "beat").values():
        queues.update(argv[argv.index("-Q") + 1].split(","))
    assert {spec.queue for spec in tasks.ALL} <= queues

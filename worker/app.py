"""The Celery app, built from settings: JSON only, late acks, one task at a time per process."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from platform_core import tasks
from platform_core.config import Settings, get_settings
from platform_core.db.outbox import TaskMessage

QUEUES = tasks.QUEUES
TASK_MODULES = [
    "worker.tasks.system",
    "worker.tasks.ingest",
    "worker.tasks.train",
    "worker.tasks.infer",
    "worker.tasks.pacs",
    "worker.tasks.experiments",
]


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.broker_url or ""
    if url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    if url.startswith(("redis", "rediss")):
        return {"visibility_timeout": settings.broker_visibility_timeout_s}
    return {}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("medtune", broker=settings.broker_url, backend=settings.result_backend, include=TASK_MODULES)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue=tasks.INGEST,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=broker_options(settings),
        result_backend_transport_options=broker_options(settings)
        if (settings.result_backend or "").startswith("redis")
        else {},
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
        task_track_started=True,
        # Run by `celery beat` (`medtune up` starts one; compose's worker-cpu runs it with --beat).
        beat_schedule={
            "requeue-stale-jobs": {
                "task": tasks.REQUEUE_STALE_JOBS.name,
                "schedule": settings.stale_job_check_s,
                "options": {"queue": tasks.REQUEUE_STALE_JOBS.queue, "expires": settings.stale_job_check_s},
            },
            "requeue-stale-imports": {
                "task": tasks.REQUEUE_STALE_IMPORTS.name,
                "schedule": settings.pacs_import_stale_s / 2,
                "options": {
                    "queue": tasks.REQUEUE_STALE_IMPORTS.queue,
                    "expires": settings.pacs_import_stale_s / 2,
                },
            },
        },
    )
    return app


def dispatcher(app: Celery) -> Any:
    def dispatch(message: TaskMessage) -> None:
        app.send_task(message.name, args=list(message.args), kwargs=message.kwargs, queue=message.queue)

    return dispatch


celery_app = make_celery()

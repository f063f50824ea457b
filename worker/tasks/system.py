"""Liveness: a task that proves a worker consumes and answers."""

from __future__ import annotations

import os

from worker.app import celery_app


@celery_app.task(name="system.ping")
def ping() -> dict[str, object]:
    return {"pong": True, "pid": os.getpid()}

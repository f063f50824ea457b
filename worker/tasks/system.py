"""Liveness: a task that proves a worker consumes and answers."""

from __future__ import annotations

import os

from platform_core import tasks
from worker.app import celery_app


@celery_app.task(name=tasks.PING.name)
def ping() -> dict[str, object]:
    return {"pong": True, "pid": os.getpid()}

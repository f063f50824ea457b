"""PACS imports on the ingest queue: ids in, platform_core.pacs.imports does the work; the beat sends
again the imports whose worker stopped beating (a restart, a killed worker)."""

from __future__ import annotations

from typing import Any

from platform_core import tasks
from platform_core.db.session import unit_of_work
from platform_core.pacs import service
from platform_core.pacs.imports import ImportRun, run_import
from worker import faults
from worker.app import celery_app, dispatcher
from worker.context import context


@celery_app.task(name=tasks.PACS_IMPORT.name, bind=True, acks_late=True)
def run(self: Any, import_id: str) -> str | None:
    """Idempotent: a delivery that finds the import held by a live runner, or ended, returns at once."""
    ctx = context()
    runner = str(self.request.id or import_id)
    run = ImportRun(ctx.settings, ctx.sessions, ctx.store, dispatcher(celery_app), import_id, runner,
                    before_study=faults.crash_at)  # fmt: skip
    return run_import(run)


@celery_app.task(name=tasks.REQUEUE_STALE_IMPORTS.name)
def requeue_stale() -> list[str]:
    ctx = context()
    with unit_of_work(ctx.sessions, dispatcher(celery_app)) as session:
        return service.requeue_stale(session, ctx.settings.pacs_import_stale_s)

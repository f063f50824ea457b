"""Inference tasks on the `infer` queue: batch predictions over a dataset split; evaluating a version
promoted from a non-best epoch. Work that keeps killing its worker ends instead of coming back: a batch
prediction `failed`, an evaluation at the default thresholds; both with reason worker_crash."""

from __future__ import annotations

import logging

from platform_core import tasks
from platform_core.db import attempts
from platform_core.db.session import unit_of_work
from worker import faults
from worker.app import celery_app
from worker.context import context

log = logging.getLogger("medtune.worker")


def _crashed(what: str, died: int) -> str:
    return (
        f"{attempts.WORKER_CRASH}: {what} ended its worker process {died} times (killed, out of memory "
        "or crashed); it is not tried again"
    )


@celery_app.task(name=tasks.BATCH_PREDICTIONS.name)
def batch_predictions(batch_id: str) -> str:
    from platform_core.inference import batch

    ctx = context()
    with ctx.delivery(tasks.BATCH_PREDICTIONS, batch_id) as died:
        try:
            if ctx.gave_up(died):
                with unit_of_work(ctx.sessions) as session:
                    batch.fail(session, batch_id, _crashed("the batch prediction", died))
                return "failed"
            faults.crash_at(batch_id)
            return batch.run(ctx.sessions, ctx.store, ctx.settings, batch_id)
        except Exception as exc:
            # Not retried (the same error would come back): the batch says why, the log has the trace.
            log.exception("batch prediction %s failed", batch_id)
            with unit_of_work(ctx.sessions) as session:
                batch.fail(session, batch_id, f"{type(exc).__name__}: {exc}")
            return "failed"


@celery_app.task(name=tasks.EVALUATE_VERSION.name)
def evaluate_version(version_id: str) -> str:
    from platform_core.registry import evaluate

    ctx = context()
    with ctx.delivery(tasks.EVALUATE_VERSION, version_id) as died:
        if ctx.gave_up(died):
            failed = evaluate.failed(_crashed("the evaluation", died))
            return evaluate.record(ctx.sessions, ctx.store, version_id, failed)
        faults.crash_at(version_id)
        return evaluate.run(ctx.sessions, ctx.store, ctx.settings, version_id)

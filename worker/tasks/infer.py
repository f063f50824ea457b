"""Inference tasks on the `infer` queue: batch predictions over a dataset split; evaluating a version
promoted from a non-best epoch. A batch prediction that keeps killing its worker, or raises, ends
`failed` with why."""

from __future__ import annotations

import logging

from platform_core.db import attempts
from platform_core.db.session import unit_of_work
from worker import faults
from worker.app import celery_app
from worker.context import context

log = logging.getLogger("medtune.worker")


@celery_app.task(name="infer.batch_predictions")
def batch_predictions(batch_id: str) -> str:
    from platform_core.inference import batch

    ctx = context()
    key = attempts.key("infer.batch_predictions", batch_id)
    died = ctx.begin_delivery(key)
    try:
        if ctx.gave_up(died):
            message = (f"{attempts.WORKER_CRASH}: the batch prediction ended its worker process {died} "
                       "times (killed, out of memory or crashed); it is not tried again")  # fmt: skip
            with unit_of_work(ctx.sessions) as session:
                batch.fail(session, batch_id, message)
            return "failed"
        faults.crash_at(batch_id)
        return batch.run(ctx.sessions, ctx.store, ctx.settings, batch_id)
    except Exception as exc:
        # Not retried (the same error would come back): the batch says why, the log has the trace.
        log.exception("batch prediction %s failed", batch_id)
        with unit_of_work(ctx.sessions) as session:
            batch.fail(session, batch_id, f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        ctx.end_delivery(key)


@celery_app.task(name="infer.evaluate_version")
def evaluate_version(version_id: str) -> str:
    from platform_core.registry import evaluate

    ctx = context()
    return evaluate.run(ctx.sessions, ctx.store, ctx.settings, version_id)

"""Inference tasks on the `infer` queue: batch predictions over a dataset split; evaluating a version
promoted from a non-best epoch."""

from __future__ import annotations

from worker.app import celery_app
from worker.context import context


@celery_app.task(name="infer.batch_predictions")
def batch_predictions(batch_id: str) -> str:
    from platform_core.inference import batch

    ctx = context()
    return batch.run(ctx.sessions, ctx.store, ctx.settings, batch_id)


@celery_app.task(name="infer.evaluate_version")
def evaluate_version(version_id: str) -> str:
    from platform_core.registry import evaluate

    ctx = context()
    return evaluate.run(ctx.sessions, ctx.store, ctx.settings, version_id)

"""Fine-tuning tasks: validate a job (CPU queue), run it (`train` queue, one job per GPU), requeue stale."""

from __future__ import annotations

from typing import Any

from celery.signals import celeryd_after_setup

import platform_core.db.models  # noqa: F401  (every table, so foreign keys resolve in this process)
from worker.app import celery_app
from worker.context import context


def _dispatch() -> Any:
    from worker.app import dispatcher

    return dispatcher(celery_app)


@celery_app.task(name="train.validate")
def validate(job_id: str) -> None:
    from platform_core.db.session import unit_of_work
    from platform_core.training.jobs import service

    ctx = context()
    try:
        with unit_of_work(ctx.sessions, _dispatch()) as session:
            service.validate(session, job_id, ctx.store)
    except Exception:
        # Never leave a job in validating_files: record the failure, then let Celery log the trace.
        with unit_of_work(ctx.sessions) as session:
            service.fail_unexpectedly(session, job_id, "validation")
        raise


# acks_late with reject_on_worker_lost (the app's defaults): a worker killed mid-run has the message
# redelivered, and the run continues from its last checkpoint.
@celery_app.task(name="train.run")
def run(job_id: str) -> str:
    from platform_core.training.jobs.runner import RunOptions, mlflow_tracker, run_job

    ctx = context()
    settings = ctx.settings
    tracker = mlflow_tracker(settings.mlflow_tracking_uri or "", settings.mlflow_ui_url)
    return run_job(ctx.sessions, ctx.store, job_id, tracker, RunOptions(), _dispatch())


@celery_app.task(name="train.requeue_stale")
def requeue_stale() -> list[str]:
    from platform_core.db.session import unit_of_work
    from platform_core.training.jobs import service

    with unit_of_work(context().sessions, _dispatch()) as session:
        return service.requeue_stale(session)


@celeryd_after_setup.connect
def preload_training(sender: str, instance: Any, **_: Any) -> None:
    """A worker that consumes the train queue imports the training stack once, in its main process
    before the pool forks: each run (and each replacement child) then starts without the ~10 s of
    importing torch, timm, peft, scikit-learn, matplotlib and MLflow. Importing torch does not
    initialise CUDA, so the forked children can still use the GPU."""
    from platform_core.training.jobs.service import TRAIN_QUEUE

    if TRAIN_QUEUE not in instance.app.amqp.queues.consume_from:
        return
    import matplotlib.figure  # noqa: F401
    import mlflow.tracking  # noqa: F401

    import platform_core.training.jobs.runner  # noqa: F401

"""Fine-tuning tasks: validate a job (CPU queue), run it (`train` queue, one job per GPU), requeue stale
jobs and start the ones the per-project limit held back. A job whose deliveries keep killing their
worker ends `failed` with error code worker_crash."""

from __future__ import annotations

from typing import Any

from celery.signals import celeryd_after_setup

import platform_core.db.models  # noqa: F401  (every table, so foreign keys resolve in this process)
from platform_core import tasks
from platform_core.db import attempts
from worker import faults
from worker.app import celery_app, dispatcher
from worker.context import context
from worker.tasks import experiments


def _dispatch() -> Any:
    return dispatcher(celery_app)


@celery_app.task(name=tasks.VALIDATE_JOB.name)
def validate(job_id: str) -> None:
    from platform_core.db.session import unit_of_work
    from platform_core.jobs import status, validation

    ctx = context()
    key = attempts.key(tasks.VALIDATE_JOB.name, job_id)
    if _gave_up(key, job_id, "validation"):
        return
    try:
        with unit_of_work(ctx.sessions, _dispatch()) as session:
            validation.validate(session, job_id, ctx.store)
    except Exception:
        # Never leave a job in validating_files: record the failure, then let Celery log the trace.
        with unit_of_work(ctx.sessions) as session:
            status.fail_unexpectedly(session, job_id, "validation")
        raise
    finally:
        ctx.end_delivery(key)
        experiments.job_ended(job_id)  # a run that ended in validation still counts for its experiment


# acks_late with reject_on_worker_lost (the app's defaults): a worker killed mid-run has the message
# redelivered, and the run continues from its last checkpoint, up to max_task_attempts deliveries.
@celery_app.task(name=tasks.RUN_JOB.name)
def run(job_id: str) -> str:
    from platform_core.jobs.run import RunOptions, mlflow_tracker, run_job

    ctx = context()
    key = attempts.key(tasks.RUN_JOB.name, job_id)
    if _gave_up(key, job_id, "the run"):
        return "failed"
    settings = ctx.settings
    tracker = mlflow_tracker(settings.mlflow_tracking_uri or "", settings.mlflow_ui_url)

    def make_tracker(job: Any) -> Any:
        faults.crash_at(job.id)
        return tracker(job)

    options = RunOptions(max_running_per_project=settings.max_running_jobs_per_project)
    status = run_job(ctx.sessions, ctx.store, job_id, make_tracker, options, _dispatch())
    ctx.end_delivery(key)
    if status in ("succeeded", "failed", "cancelled"):
        experiments.job_ended(job_id)
    # Its slot, if it ended, may start a held job; if it was held itself, a job that ended while it
    # was being held back may have left a slot it missed.
    _start_waiting()
    return status


def _gave_up(key: str, job_id: str, stage: str) -> bool:
    """Count this delivery; past max_task_attempts that died, fail the job with worker_crash."""
    from platform_core.db.session import unit_of_work
    from platform_core.jobs import status

    ctx = context()
    died = ctx.begin_delivery(key)
    if not ctx.gave_up(died):
        return False
    with unit_of_work(ctx.sessions, _dispatch()) as session:
        status.fail_crashed(session, job_id, stage, died)
    ctx.end_delivery(key)
    experiments.job_ended(job_id)
    _start_waiting()
    return True


def _start_waiting() -> list[str]:
    from platform_core.db.session import unit_of_work
    from platform_core.jobs import service

    ctx = context()
    with unit_of_work(ctx.sessions, _dispatch()) as session:
        return service.start_waiting(session, ctx.settings.max_running_jobs_per_project)


@celery_app.task(name=tasks.REQUEUE_STALE_JOBS.name)
def requeue_stale() -> list[str]:
    """The beat's backstop: stale running jobs go back on the queue; held-back ones start if they can."""
    from platform_core.db.session import unit_of_work
    from platform_core.jobs import service

    with unit_of_work(context().sessions, _dispatch()) as session:
        requeued = service.requeue_stale(session)
    experiments.finalize_stalled()
    return requeued + _start_waiting()


@celeryd_after_setup.connect
def preload_training(sender: str, instance: Any, **_: Any) -> None:
    """A worker that consumes the train queue imports the training stack once, in its main process
    before the pool forks: each run (and each replacement child) then starts without the ~10 s of
    importing torch, timm, peft, scikit-learn, matplotlib and MLflow. Importing torch does not
    initialise CUDA, so the forked children can still use the GPU."""
    if tasks.RUN_JOB.queue not in instance.app.amqp.queues.consume_from:
        return
    import matplotlib.figure  # noqa: F401
    import mlflow.tracking  # noqa: F401

    import platform_core.jobs.run  # noqa: F401

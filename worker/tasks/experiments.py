"""Data-volume experiments on the ingest queue: recompute an experiment's result (fits, figures) when one
of its runs ends; `job_ended` is what the fine-tuning tasks call as a job reaches its final status, and
`finalize_stalled` what the beat's requeue task calls for the ends no task saw (a job cancelled before it
ran, a worker that died)."""

from __future__ import annotations

from platform_core import tasks
from platform_core.db.session import unit_of_work
from worker.app import celery_app, dispatcher
from worker.context import context


@celery_app.task(name=tasks.FINALIZE_EXPERIMENT.name)
def finalize(experiment_id: str) -> str:
    """Idempotent: it writes the whole result again from the runs' jobs as they stand."""
    from platform_core.experiments.finalize import finalize as recompute

    ctx = context()
    settings = ctx.settings
    with unit_of_work(ctx.sessions) as session:
        return recompute(
            session, ctx.store, experiment_id, settings.mlflow_tracking_uri, settings.mlflow_ui_url
        )


def job_ended(job_id: str) -> None:
    """If the job is an experiment's run, send that experiment's finalize (after this commit)."""
    from platform_core.experiments import service

    ctx = context()
    with unit_of_work(ctx.sessions, dispatcher(celery_app)) as session:
        service.job_ended(session, job_id)


def finalize_stalled() -> list[str]:
    """Experiments whose runs all ended without their finalize being sent: sent now (the beat calls it)."""
    from platform_core.experiments import service

    ctx = context()
    with unit_of_work(ctx.sessions, dispatcher(celery_app)) as session:
        return service.finalize_stalled(session)

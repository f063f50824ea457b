"""Queries of experiments and their runs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from platform_core.errors import NotFound
from platform_core.experiments.models import Experiment, ExperimentRun
from platform_core.jobs.models import Job


def get(
    session: Session, experiment_id: str, project_id: str | None = None, lock: bool = False
) -> Experiment:
    q = select(Experiment).where(Experiment.id == experiment_id)
    if project_id is not None:
        q = q.where(Experiment.project_id == project_id)
    if lock:
        q = q.with_for_update()
    found = session.scalars(q).first()
    if found is None:
        raise NotFound(f"no experiment {experiment_id}", param="experiment_id")
    return found


def list_experiments(
    session: Session, project_id: str, limit: int, after: str | None
) -> Sequence[Experiment]:
    """Newest first; `limit` rows (the caller asks one more than it shows)."""
    q = select(Experiment).where(Experiment.project_id == project_id)
    if after:
        q = q.where(Experiment.id < after)
    return session.scalars(q.order_by(Experiment.id.desc()).limit(limit)).all()


def runs(session: Session, experiment_id: str) -> Sequence[ExperimentRun]:
    q = select(ExperimentRun).where(ExperimentRun.experiment_id == experiment_id)
    return session.scalars(q.order_by(ExperimentRun.size, ExperimentRun.seed)).all()


def run_for_job(session: Session, job_id: str) -> ExperimentRun | None:
    return session.scalars(select(ExperimentRun).where(ExperimentRun.job_id == job_id)).first()


def jobs(session: Session, job_ids: Sequence[str]) -> dict[str, Job]:
    if not job_ids:
        return {}
    return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(list(job_ids))))}


def stalled(session: Session, terminal: Sequence[str]) -> Sequence[str]:
    """Running experiments none of whose runs' jobs is still going (their finalize was missed: a job
    cancelled over the jobs API, a worker that died)."""
    going = (
        select(ExperimentRun.id)
        .join(Job, Job.id == ExperimentRun.job_id)
        .where(ExperimentRun.experiment_id == Experiment.id, Job.status.not_in(list(terminal)))
    )
    return session.scalars(select(Experiment.id).where(Experiment.status == "running", ~exists(going))).all()

"""Queries for jobs, events, checkpoints, groups and registered base-model weights."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from platform_core.errors import NotFound
from platform_core.jobs.models import BaseModelWeights, Job, JobCheckpoint, JobEvent, JobGroup


def get_job(session: Session, job_id: str, project_id: str | None = None, lock: bool = False) -> Job:
    q = select(Job).where(Job.id == job_id)
    if project_id is not None:
        q = q.where(Job.project_id == project_id)
    if lock:
        q = q.with_for_update()
    job = session.scalar(q)
    if job is None:
        raise NotFound(f"no fine-tuning job {job_id}")
    return job


def find_job(session: Session, job_id: str) -> Job | None:
    """The job by id alone, or None: another domain's record (a model version) names it."""
    return session.get(Job, job_id)


def list_jobs(
    session: Session, project_id: str, limit: int, after: str | None, status: str | None = None
) -> Sequence[Job]:
    q = select(Job).where(Job.project_id == project_id)
    if status is not None:
        q = q.where(Job.status == status)
    if after:
        q = q.where(Job.id < after)
    return session.scalars(q.order_by(Job.id.desc()).limit(limit)).all()


def group_jobs(session: Session, group_id: str) -> Sequence[Job]:
    return session.scalars(select(Job).where(Job.group_id == group_id).order_by(Job.id)).all()


def list_groups(session: Session, project_id: str, limit: int, after: str | None) -> Sequence[JobGroup]:
    q = select(JobGroup).where(JobGroup.project_id == project_id)
    if after:
        q = q.where(JobGroup.id < after)
    return session.scalars(q.order_by(JobGroup.id.desc()).limit(limit)).all()


def get_group(session: Session, group_id: str, project_id: str) -> JobGroup:
    group = session.scalar(select(JobGroup).where(JobGroup.id == group_id, JobGroup.project_id == project_id))
    if group is None:
        raise NotFound(f"no fine-tuning job group {group_id}")
    return group


def list_events(
    session: Session, job_id: str, limit: int, after: str | None, ascending: bool
) -> Sequence[JobEvent]:
    q = select(JobEvent).where(JobEvent.job_id == job_id)
    if after:
        q = q.where(JobEvent.id > after if ascending else JobEvent.id < after)
    order = JobEvent.id.asc() if ascending else JobEvent.id.desc()
    return session.scalars(q.order_by(order).limit(limit)).all()


def list_checkpoints(
    session: Session, job_id: str, limit: int | None = None, after: str | None = None
) -> Sequence[JobCheckpoint]:
    """By epoch; `after` (a checkpoint id) keeps the later epochs."""
    q = select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)
    if after:
        cursor = select(JobCheckpoint.epoch).where(JobCheckpoint.id == after).scalar_subquery()
        q = q.where(JobCheckpoint.epoch > cursor)
    return session.scalars(q.order_by(JobCheckpoint.epoch).limit(limit)).all()


def last_checkpoint(session: Session, job_id: str) -> JobCheckpoint | None:
    q = (
        select(JobCheckpoint)
        .where(JobCheckpoint.job_id == job_id)
        .order_by(JobCheckpoint.epoch.desc())
        .limit(1)
    )
    return session.scalar(q)


def checkpoint_at(session: Session, job_id: str, epoch: int) -> JobCheckpoint | None:
    return session.scalar(
        select(JobCheckpoint).where(JobCheckpoint.job_id == job_id, JobCheckpoint.epoch == epoch)
    )


def delete_checkpoints_after(session: Session, job_id: str, epoch: int) -> None:
    for ckpt in session.scalars(
        select(JobCheckpoint).where(JobCheckpoint.job_id == job_id, JobCheckpoint.epoch > epoch)
    ):
        session.delete(ckpt)


def cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def touch(session: Session, job_id: str, now: datetime) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=now))


def stale_running(session: Session, before: datetime) -> Sequence[Job]:
    q = (
        select(Job)
        .where(Job.status == "running", Job.heartbeat_at < before)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(q).all()


def running_count(session: Session, project_id: str, but: str | None = None) -> int:
    q = select(func.count()).select_from(Job).where(Job.project_id == project_id, Job.status == "running")
    if but is not None:
        q = q.where(Job.id != but)
    return int(session.scalar(q) or 0)


def projects_with_waiting_jobs(session: Session) -> Sequence[str]:
    q = select(Job.project_id).where(Job.status == "queued", Job.waiting_since.is_not(None)).distinct()
    return session.scalars(q).all()


def waiting_jobs(session: Session, project_id: str, limit: int | None) -> Sequence[Job]:
    """Queued jobs the running-jobs limit holds back, oldest first; `limit` None: all of them."""
    if limit is not None and limit <= 0:
        return []
    q = (
        select(Job)
        .where(Job.project_id == project_id, Job.status == "queued", Job.waiting_since.is_not(None))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(q).all()


def get_base_model(session: Session, base_model_id: str, project_id: str) -> BaseModelWeights:
    q = select(BaseModelWeights).where(
        BaseModelWeights.id == base_model_id, BaseModelWeights.project_id == project_id
    )
    found = session.scalar(q)
    if found is None:
        raise NotFound(f"no registered base model {base_model_id}")
    return found


def list_base_models(session: Session, project_id: str) -> Sequence[BaseModelWeights]:
    q = select(BaseModelWeights).where(BaseModelWeights.project_id == project_id)
    return session.scalars(q.order_by(BaseModelWeights.id.desc())).all()


def base_model_by_name(session: Session, project_id: str, name: str) -> BaseModelWeights | None:
    q = select(BaseModelWeights).where(
        BaseModelWeights.project_id == project_id, BaseModelWeights.name == name
    )
    return session.scalar(q)

"""Jobs, their events, checkpoints and groups as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from platform_core.jobs import repository as repo
from platform_core.jobs.models import Job, JobCheckpoint, JobEvent
from platform_core.jobs.schemas import CheckpointOut, EventOut, GroupOut, JobError, JobOut, SplitRef
from platform_core.pagination import Page
from platform_core.splits import repository as splits
from platform_core.splits.models import Split
from platform_core.training import metrics as M


def job_out(job: Job) -> JobOut:
    split_seed = (job.split_request or {}).get("seed")
    return JobOut(
        id=job.id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        status=job.status,
        dataset_id=job.dataset_id,
        dataset_version=job.dataset_version_id,
        split=SplitRef(
            id=job.split_id,
            sha256=(job.best or {}).get("split_sha256") or _split_sha(job),
            seed=split_seed if split_seed is not None else _split_seed(job),
        ),
        group_id=job.group_id,
        base_model=job.base_model,
        weights=job.weights,
        weights_sha256=job.weights_sha256,
        method=job.method,
        hyperparameters=job.resolved or job.hyperparameters,
        checkpoint_metric=job.checkpoint_metric,
        seed=job.seed,
        suffix=job.suffix,
        metadata=job.meta,
        labels=job.labels,
        progress=job.progress,
        best=job.best,
        result=job.result,
        error=JobError(**job.error) if job.error else None,
        mlflow_run_id=job.mlflow_run_id,
        mlflow_url=job.mlflow_url,
        adapter={"key": job.adapter_key, "sha256": job.adapter_sha256} if job.adapter_key else None,
        attempts=job.attempts,
        data_erased=job.data_erased,
    )


def _split_record(job: Job) -> Split | None:
    from sqlalchemy.orm import object_session

    session = object_session(job)
    return splits.find_split(session, job.split_id) if session is not None else None


def _split_sha(job: Job) -> str | None:
    split = _split_record(job)
    return split.sha256 if split is not None else None


def _split_seed(job: Job) -> int | None:
    split = _split_record(job)
    return split.seed if split is not None else None


def get_job(session: Session, project_id: str, job_id: str) -> JobOut:
    return job_out(repo.get_job(session, job_id, project_id))


def list_jobs(
    session: Session, project_id: str, limit: int, after: str | None, status: str | None = None
) -> Page[JobOut]:
    """Newest first; `status` keeps the jobs in that state."""
    return Page.build(repo.list_jobs(session, project_id, limit + 1, after, status), limit, job_out)


def list_events(
    session: Session, project_id: str, job_id: str, limit: int, after: str | None, ascending: bool = False
) -> list[EventOut]:
    repo.get_job(session, job_id, project_id)
    return [event_out(e) for e in repo.list_events(session, job_id, limit, after, ascending)]


def events_page(
    session: Session, project_id: str, job_id: str, limit: int, after: str | None
) -> Page[EventOut]:
    """Newest first; `after` pages towards older events."""
    return Page.build(list_events(session, project_id, job_id, limit + 1, after), limit)


@dataclass(frozen=True)
class JobHead:
    """What an event stream polls: whether the job is over, its status and its newest event."""

    terminal: bool
    status: str
    newest_event_id: str | None


def head(session: Session, project_id: str, job_id: str) -> JobHead:
    # The status first: events written before a job ended are then visible to the second read.
    job = repo.get_job(session, job_id, project_id)
    terminal, status = job.is_terminal, job.status
    newest = list_events(session, project_id, job_id, 1, None)
    return JobHead(terminal, status, newest[0].id if newest else None)


def event_out(e: JobEvent) -> EventOut:
    return EventOut(
        id=e.id, created_at=e.created_at, level=e.level, type=e.type, message=e.message, data=e.data
    )


def list_checkpoints(
    session: Session, project_id: str, job_id: str, limit: int, after: str | None
) -> Page[CheckpointOut]:
    repo.get_job(session, job_id, project_id)
    return Page.build(repo.list_checkpoints(session, job_id, limit + 1, after), limit, checkpoint_out)


def checkpoint_out(c: JobCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        id=c.id,
        created_at=c.created_at,
        epoch=c.epoch,
        step=c.step,
        metrics=c.metrics,
        is_best=c.is_best,
        sha256=c.sha256,
        size_bytes=c.size_bytes,
    )


def list_groups(session: Session, project_id: str, limit: int, after: str | None) -> Page[GroupOut]:
    groups = repo.list_groups(session, project_id, limit + 1, after)
    return Page.build(groups, limit, lambda g: group_out(session, project_id, g.id))


def group_out(session: Session, project_id: str, group_id: str) -> GroupOut:
    group = repo.get_group(session, group_id, project_id)
    jobs = list(repo.group_jobs(session, group.id))
    done = [j for j in jobs if j.status == "succeeded" and j.result]
    summary: dict[str, Any] = {"n_succeeded": len(done), "metrics": {}}
    for metric in M.METRICS:
        summary["metrics"][f"test_{metric}"] = M.mean_sd_ci(
            [(j.result or {}).get("macro", {}).get(metric) for j in done]
        )
    if any(not j.is_terminal for j in jobs):
        status = "running"
    else:
        status = "succeeded" if len(done) == len(jobs) else "completed_with_failures"
    return GroupOut(
        id=group.id,
        created_at=group.created_at,
        split_seeds=list(group.split_seeds),
        jobs=[job_out(j) for j in jobs],
        status=status,
        summary=summary,
    )

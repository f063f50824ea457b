"""Fine-tuning jobs: create (one job or a seed sweep's group), cancel, resume, requeue stale ones and
start the ones the per-project running limit held back.

Statuses go validating_files -> queued -> running -> succeeded | failed | cancelled (status.py writes
each change with its event); validation.py checks a job before it runs, views.py shapes responses,
base_models.py owns the base weights. Services flush; the request or the task commits; tasks are
queued through the outbox.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.auth import repository as projects
from platform_core.db import outbox
from platform_core.errors import Conflict, Invalid, NotFound
from platform_core.ids import new_id
from platform_core.jobs import repository as repo
from platform_core.jobs.models import Job, JobGroup
from platform_core.jobs.schemas import JobCreate, JobGroupCreate
from platform_core.jobs.status import add_event, now, set_status
from platform_core.training import catalog
from platform_core.training import weights as W

VALIDATE_TASK = tasks.VALIDATE_JOB
RUN_TASK = tasks.RUN_JOB
STALE_AFTER_S = 300


# --- create -----------------------------------------------------------------------------------


def _check_request(session: Session, project_id: str, body: JobCreate) -> None:
    from platform_core.datasets import repository as datasets
    from platform_core.splits import repository as splits

    entry = catalog.get(body.base_model)
    W.validate_spec(body.weights)
    if body.weights.startswith(W.BASE_MODEL_PREFIX):
        registered = repo.get_base_model(session, body.weights, project_id)
        if registered.architecture != entry.name:
            raise Invalid(
                f"base model {registered.id} holds '{registered.architecture}' weights, not '{entry.name}'",
                param="weights",
            )
    if body.split_id is not None and body.split is not None:
        raise Invalid("give split_id or split, not both", param="split")
    if datasets.get_dataset(session, project_id, body.dataset_id) is None:
        raise NotFound(f"no dataset {body.dataset_id}")
    if body.split_id is not None:
        splits.get_split(session, body.split_id, project_id, body.dataset_id)


def _new_job(
    project_id: str, body: JobCreate, group_id: str | None = None, split_seed: int | None = None
) -> Job:
    split_request = body.split.model_dump() if body.split is not None else None
    if split_seed is not None:
        split_request = {**(split_request or {"fractions": None}), "seed": split_seed}
    seed = body.seed if body.seed is not None else (split_seed if split_seed is not None else 0)
    return Job(
        id=new_id("ftjob"),
        project_id=project_id,
        group_id=group_id,
        dataset_id=body.dataset_id,
        split_id=body.split_id if split_seed is None else None,
        split_request=split_request if body.split_id is None or split_seed is not None else None,
        base_model=body.base_model,
        weights=body.weights,
        method=body.method.model_dump(),
        hyperparameters=body.hyperparameters.model_dump(),
        checkpoint_metric=body.checkpoint_metric,
        seed=seed,
        suffix=body.suffix,
        meta=dict(body.metadata),
        status="validating_files",
        attempts=0,
        cancel_requested=False,
    )


def create_job(
    session: Session, project_id: str, body: JobCreate, train_subset: list[str] | None = None
) -> Job:
    """`train_subset`: image ids of the split's training part to train on (None: all of it)."""
    _check_request(session, project_id, body)
    job = _new_job(project_id, body)
    job.train_subset = train_subset
    session.add(job)
    add_event(session, job, "job created; validating its data and weights", data={"status": job.status})
    session.flush()
    outbox.enqueue(session, VALIDATE_TASK, job.id)
    return job


def create_group(session: Session, project_id: str, body: JobGroupCreate) -> JobGroup:
    if body.split_id is not None:
        raise Invalid(
            "a seed sweep makes one split per seed: give split (fractions) or nothing, not split_id",
            param="split_id",
        )
    if len(set(body.split_seeds)) != len(body.split_seeds):
        raise Invalid("split_seeds repeat a seed", param="split_seeds")
    _check_request(session, project_id, body)
    group = JobGroup(
        id=new_id("ftgrp"),
        project_id=project_id,
        split_seeds=list(body.split_seeds),
        request=body.model_dump(mode="json"),
    )
    session.add(group)
    session.flush()
    job_body = JobCreate.model_validate(body.model_dump(exclude={"split_seeds"}))
    for seed in body.split_seeds:
        job = _new_job(project_id, job_body, group.id, split_seed=seed)
        session.add(job)
        add_event(
            session, job, f"job created in group {group.id} (split seed {seed})", data={"status": job.status}
        )
        session.flush()
        outbox.enqueue(session, VALIDATE_TASK, job.id)
    return group


# --- cancel, resume, stale heartbeats ----------------------------------------------------------


def cancel(session: Session, project_id: str, job_id: str) -> Job:
    job = repo.get_job(session, job_id, project_id, lock=True)
    if job.is_terminal:
        raise Conflict(f"job {job.id} already {job.status}", param="job_id")
    job.cancel_requested = True
    if job.status in ("validating_files", "queued"):
        set_status(session, job, "cancelled", "cancelled before it started")
    else:
        add_event(session, job, "cancellation requested; the run stops at its next step")
        session.flush()
    return job


def resume(session: Session, project_id: str, job_id: str) -> Job:
    job = repo.get_job(session, job_id, project_id, lock=True)
    if job.status not in ("failed", "cancelled"):
        raise Conflict(
            f"only a failed or cancelled job can resume; job {job.id} is {job.status}", param="job_id"
        )
    last = repo.last_checkpoint(session, job.id)
    job.cancel_requested = False
    job.error = None
    job.finished_at = None
    where = f"from the checkpoint of epoch {last.epoch}" if last else "from the start"
    if job.resolved is None:
        set_status(session, job, "validating_files", "resumed; validating again")
        outbox.enqueue(session, VALIDATE_TASK, job.id)
    else:
        set_status(session, job, "queued", f"resumed; it continues {where}")
        outbox.enqueue(session, RUN_TASK, job.id)
    return job


def requeue_stale(session: Session, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Running jobs whose worker stopped beating (vanished without redelivery) go back on the queue."""
    requeued = []
    for job in repo.stale_running(session, now() - timedelta(seconds=stale_after_s)):
        set_status(
            session,
            job,
            "queued",
            "the worker's heartbeat went stale; requeued to resume from the last checkpoint",
            level="warn",
        )
        outbox.enqueue(session, RUN_TASK, job.id)
        requeued.append(job.id)
    return requeued


# --- the per-project limit on running jobs --------------------------------------------------------


def slot_free(session: Session, job: Job, limit: int) -> bool:
    """Whether the job's project runs fewer than `limit` jobs (0: no limit). Locks the project row, so
    that two workers starting jobs of one project at once count one after the other."""
    if limit <= 0:
        return True
    projects.lock_project(session, job.project_id)
    return repo.running_count(session, job.project_id, but=job.id) < limit


def hold(session: Session, job: Job, limit: int) -> None:
    """Keep a queued job waiting for a slot; start_waiting() sends it again when one frees."""
    if job.waiting_since is None:
        add_event(session, job, f"waiting: {limit} job(s) of this project are running "
                  "(max_running_jobs_per_project); it starts when one ends")  # fmt: skip
    job.waiting_since = now()
    session.flush()


def start_waiting(session: Session, limit: int) -> list[str]:
    """Send the run of each held-back job whose project has a free slot again, oldest first."""
    started = []
    for project_id in repo.projects_with_waiting_jobs(session):
        free = None if limit <= 0 else limit - repo.running_count(session, project_id)
        for job in repo.waiting_jobs(session, project_id, free):
            job.waiting_since = None
            outbox.enqueue(session, RUN_TASK, job.id)
            started.append(job.id)
    session.flush()
    return started

"""Fine-tuning jobs: create, validate, cancel, resume, requeue stale ones, groups, events, base models.

Statuses go validating_files -> queued -> running -> succeeded | failed | cancelled. A status change and
its event are written in the same transaction, so a reader never sees an event before its cause.
Services flush; the request or the task commits; tasks are queued through the outbox.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.db import attempts, outbox
from platform_core.errors import Conflict, Invalid, PayloadTooLarge, PlatformError
from platform_core.ids import new_id
from platform_core.storage import ObjectStore
from platform_core.training import catalog
from platform_core.training import metrics as M
from platform_core.training import weights as W
from platform_core.training.jobs import repository as repo
from platform_core.training.jobs.models import BaseModelWeights, Job, JobCheckpoint, JobEvent, JobGroup
from platform_core.training.jobs.schemas import (
    BaseModelOut,
    CheckpointOut,
    EventOut,
    GroupOut,
    JobCreate,
    JobError,
    JobGroupCreate,
    JobOut,
    SplitRef,
)

VALIDATE_TASK = tasks.VALIDATE_JOB
RUN_TASK = tasks.RUN_JOB
STALE_AFTER_S = 300


def now() -> datetime:
    return datetime.now(UTC)


def add_event(
    session: Session,
    job: Job,
    message: str,
    level: str = "info",
    type_: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    event = JobEvent(id=new_id("ftevent"), job_id=job.id, level=level, type=type_, message=message, data=data)
    session.add(event)
    return event


def set_status(session: Session, job: Job, status: str, message: str, level: str = "info") -> None:
    job.status = status
    job.waiting_since = None  # a job the running-jobs limit holds back waits from hold() on
    if status in ("succeeded", "failed", "cancelled"):
        job.finished_at = now()
    add_event(session, job, message, level, data={"status": status})
    session.flush()


def fail(session: Session, job: Job, code: str, message: str, param: str | None = None) -> None:
    job.error = {"code": code, "message": message, "param": param}
    set_status(session, job, "failed", message, level="error")


def fail_unexpectedly(session: Session, job_id: str, stage: str) -> None:
    job = repo.get_job(session, job_id, lock=True)
    if not job.is_terminal:
        fail(session, job, "internal_error", f"{stage} failed unexpectedly; see the worker log")


def fail_crashed(session: Session, job_id: str, stage: str, died: int) -> None:
    """The job's task died with its worker `died` times (killed, out of memory): it is not tried again."""
    job = repo.get_job(session, job_id, lock=True)
    if not job.is_terminal:
        message = (f"{stage} ended its worker process {died} times (killed, out of memory or crashed); "
                   "it is not tried again")  # fmt: skip
        fail(session, job, attempts.WORKER_CRASH, message)


def error_code(exc: PlatformError) -> str:
    return str(getattr(exc, "code", None) or exc.type)


# --- create -----------------------------------------------------------------------------------


def _check_request(session: Session, project_id: str, body: JobCreate) -> None:
    from platform_core.splits import service as splits

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
    splits.get_dataset(session, project_id, body.dataset_id)
    if body.split_id is not None:
        splits.get_split(session, project_id, body.dataset_id, body.split_id)


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


def create_job(session: Session, project_id: str, body: JobCreate) -> Job:
    _check_request(session, project_id, body)
    job = _new_job(project_id, body)
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


# --- validate (a task on the CPU queue) ------------------------------------------------------------


def resolve_hyperparameters(
    requested: dict[str, Any],
    method: dict[str, Any],
    entry: catalog.BackboneEntry,
    n_train: int,
    positive_fraction: Sequence[float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fill every "auto" with a value chosen from the base model, the method and the training set."""
    kind = method["type"]
    hp = dict(requested)

    def pick(name: str, value: Any) -> None:
        if hp.get(name, "auto") == "auto":
            hp[name] = value

    pick("epochs", {"lora": 10, "full": 5, "linear_probe": 20}[kind])
    pick("batch_size", int(min(32, max(4, n_train // 8))))
    pick("learning_rate", {"lora": 5e-4, "full": 5e-5, "linear_probe": 1e-3}[kind])
    pick("weight_decay", 0.01 if kind != "linear_probe" else 0.0)
    pick("warmup_epochs", 1.0 if hp["epochs"] >= 5 else 0.0)
    pick("early_stopping_patience", max(2, hp["epochs"] // 3))
    pick("image_size", entry.input_size)
    pick("augmentation", "light")
    pick("class_weighting", any(p < 0.25 for p in positive_fraction))
    pick("gradient_checkpointing", kind == "full" and entry.family == "vit" and entry.input_size > 224)
    lora = dict(method.get("lora") or {})
    for name, value in (("r", 8), ("alpha", 16), ("dropout", 0.1)):
        if lora.get(name, "auto") == "auto":
            lora[name] = value
    if hp["batch_size"] < 1 or hp["epochs"] < 1 or hp["image_size"] < 16:
        raise Invalid(
            "epochs, batch_size and image_size must be positive (image_size >= 16)", param="hyperparameters"
        )
    return hp, {"type": kind, "lora": lora}


def training_rows(session: Session, job: Job) -> tuple[Any, list[str]]:
    """The job's verified split and label names; makes the split first when the job asked for one."""
    from platform_core.erasure.marks import split_erased
    from platform_core.splits import checks, repository
    from platform_core.splits import service as splits
    from platform_core.splits.models import DatasetVersion

    if job.split_id is None:
        request = job.split_request or {}
        split = splits.create_split(
            session,
            job.project_id,
            job.dataset_id,
            seed=request.get("seed"),
            fractions=request.get("fractions"),
        )
        job.split_id = split.id
        session.flush()
    record = repository.get_split(session, job.split_id, job.project_id)
    if record.erased_members:
        raise split_erased(record.id, record.erased_members)
    verified = checks.verify(session, job.split_id, job.project_id)
    version = session.get(DatasetVersion, verified.record.dataset_version_id)
    assert version is not None
    job.dataset_version_id = version.id
    return verified, [str(n) for n in version.label_names]


def validate(session: Session, job_id: str, store: ObjectStore) -> None:
    job = repo.get_job(session, job_id, lock=True)
    if job.status != "validating_files":
        return
    if job.cancel_requested:
        set_status(session, job, "cancelled", "cancelled before validation")
        return
    try:
        entry = catalog.get(job.base_model)
        verified, labels = training_rows(session, job)
        train = [r for r in verified.rows if verified.assignment.get(r.image_id) == "train"]
        if not train or not any(verified.assignment.get(r.image_id) == "val" for r in verified.rows):
            raise Invalid("the split has no training or no validation images", param="split")
        positive = [sum(1 for r in train if r.labels.get(n) == 1) / len(train) for n in labels]
        job.labels = labels
        job.resolved, job.method = resolve_hyperparameters(
            job.hyperparameters, job.method, entry, len(train), positive
        )
        check_weights(session, job, entry, store)
    except PlatformError as exc:
        fail(session, job, error_code(exc), exc.message, exc.param)
        return
    set_status(session, job, "queued", f"validated: {len(train)} training images, labels {', '.join(labels)}")
    outbox.enqueue(session, RUN_TASK, job.id)


def check_weights(session: Session, job: Job, entry: catalog.BackboneEntry, store: ObjectStore) -> None:
    if job.weights == W.RANDOM:
        job.weights_sha256 = None
        return
    if job.weights.startswith(W.BASE_MODEL_PREFIX):
        registered = repo.get_base_model(session, job.weights, job.project_id)
        if not store.exists(registered.object_key):
            raise W.WeightsUnavailable(
                f"the weights file of {registered.id} is missing from the object store"
            )
        job.weights_sha256 = registered.sha256
        return
    if not (W.pretrained_cached(entry) or hub_reachable(entry)):
        raise W.WeightsUnavailable(
            W.unavailable_message(entry, "not in the local cache and the hub is unreachable")
        )


def hub_reachable(entry: catalog.BackboneEntry) -> bool:
    return W.reachable(entry)


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
    repo.lock_project(session, job.project_id)
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


# --- reading ----------------------------------------------------------------------------------


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


def _split_record(job: Job) -> Any:
    from sqlalchemy.orm import object_session

    from platform_core.splits.models import Split

    session = object_session(job)
    return session.get(Split, job.split_id) if session is not None and job.split_id else None


def _split_sha(job: Job) -> str | None:
    split = _split_record(job)
    return split.sha256 if split is not None else None


def _split_seed(job: Job) -> int | None:
    split = _split_record(job)
    return split.seed if split is not None else None


def get_job(session: Session, project_id: str, job_id: str) -> Job:
    return repo.get_job(session, job_id, project_id)


def list_jobs(
    session: Session, project_id: str, limit: int, after: str | None, status: str | None = None
) -> Sequence[Job]:
    return repo.list_jobs(session, project_id, limit, after, status)


def list_events(
    session: Session, project_id: str, job_id: str, limit: int, after: str | None, ascending: bool = False
) -> list[EventOut]:
    repo.get_job(session, job_id, project_id)
    return [event_out(e) for e in repo.list_events(session, job_id, limit, after, ascending)]


def event_out(e: JobEvent) -> EventOut:
    return EventOut(
        id=e.id, created_at=e.created_at, level=e.level, type=e.type, message=e.message, data=e.data
    )


def list_checkpoints(session: Session, project_id: str, job_id: str) -> list[CheckpointOut]:
    repo.get_job(session, job_id, project_id)
    return [checkpoint_out(c) for c in repo.list_checkpoints(session, job_id)]


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


def list_groups(session: Session, project_id: str, limit: int, after: str | None) -> list[GroupOut]:
    return [group_out(session, project_id, g.id) for g in repo.list_groups(session, project_id, limit, after)]


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


# --- base models ------------------------------------------------------------------------------


class _Hashing:
    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(f"the weights file exceeds {self.limit} bytes")
        self.sha.update(data)
        return data


def register_base_model(
    session: Session,
    store: ObjectStore,
    project_id: str,
    name: str,
    architecture: str,
    filename: str,
    stream: BinaryIO,
    max_bytes: int,
    weights_format: str = "timm",
) -> BaseModelWeights:
    entry = catalog.get(architecture)
    fmt = W.detect_format(filename, b"", weights_format)
    if not name.strip():
        raise Invalid("name must not be empty", param="name")
    if repo.base_model_by_name(session, project_id, name) is not None:
        raise Conflict(f"a base model named '{name}' already exists", param="name")
    bm_id = new_id("bm")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename.rsplit("/", 1)[-1])[:100] or "weights"
    key = f"base-models/{project_id}/{bm_id}/{safe}"
    reader = _Hashing(stream, max_bytes)
    store.put(key, reader)  # type: ignore[arg-type]
    if reader.size == 0:
        store.delete(key)
        raise Invalid("the weights file is empty", param="file")
    W.check_registered_files(store, key, fmt)
    record = BaseModelWeights(
        id=bm_id,
        project_id=project_id,
        name=name,
        architecture=entry.name,
        format=fmt,
        object_key=key,
        sha256=reader.sha.hexdigest(),
        size_bytes=reader.size,
    )
    session.add(record)
    session.flush()
    return record


def base_models(session: Session, project_id: str) -> list[BaseModelOut]:
    out = [
        BaseModelOut(
            id=e.name,
            name=e.name,
            architecture=e.arch,
            input_size=e.input_size,
            family=e.family,
            description=e.description,
            weights=W.PRETRAINED,
            weights_available=W.pretrained_cached(e),
            **published_fields(e),
        )
        for e in catalog.entries()
    ]
    out += [registered_out(r) for r in repo.list_base_models(session, project_id)]
    return out


def published_fields(e: catalog.BackboneEntry) -> dict[str, Any]:
    """Where the entry's weights are published, under which license, and what the model expects."""
    return {
        "group": e.group,
        "license": e.license or None,
        "pretraining": e.pretraining or None,
        "input_convention": e.input_convention or None,
        "weights_format": e.weights_format,
        "weights_files": list(e.weights_files),
        "weights_source": e.weights_source,
        "mean": list(e.mean),
        "std": list(e.std),
    }


def registered_out(r: BaseModelWeights) -> BaseModelOut:
    entry = catalog.get(r.architecture)
    return BaseModelOut(
        id=r.id,
        name=r.name,
        architecture=r.architecture,
        input_size=entry.input_size,
        family=entry.family,
        description=f"registered weights for {r.architecture}",
        weights=r.id,
        weights_available=True,
        **{**published_fields(entry), "weights_format": r.format},
        sha256=r.sha256,
        size_bytes=r.size_bytes,
        created_at=r.created_at,
    )

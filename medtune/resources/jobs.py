"""`client.jobs`: fine-tuning jobs: create, get, list, cancel, resume, events (paged or streamed live),
checkpoints, and wait with a live bar of the epoch and the validation metric."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from medtune._progress import NullProgress, training_bar, wanted
from medtune._transport import ServerSentEvent
from medtune.models import Checkpoint, Dataset, Job, JobEvent, JobReport, Split
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of

JOBS = "/v1/fine-tuning/jobs"


def job_body(
    dataset: str | Dataset,
    base_model: str,
    *,
    split: str | Split | None = None,
    split_seed: int | None = None,
    fractions: dict[str, float] | None = None,
    weights: str | None = None,
    method: str | dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    checkpoint_metric: str | None = None,
    seed: int | None = None,
    suffix: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The POST body; leave a field out (None) and the server applies its default or "auto"."""
    body: dict[str, Any] = {"dataset_id": id_of(dataset), "base_model": base_model}
    if split is not None:
        body["split_id"] = id_of(split)
    elif split_seed is not None or fractions is not None:
        body["split"] = {
            k: v for k, v in {"seed": split_seed, "fractions": fractions}.items() if v is not None
        }
    if isinstance(method, str):
        method = {"type": method}
    optional = {
        "weights": weights,
        "method": method,
        "hyperparameters": hyperparameters,
        "checkpoint_metric": checkpoint_metric,
        "seed": seed,
        "suffix": suffix,
        "metadata": metadata,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def metric_text(job: Job, latest: dict[str, Any]) -> str:
    """What the bar shows: the newest validation AUROC (or loss), and the best so far."""
    parts = []
    for key in ("val_auroc", "val_loss"):
        if isinstance(latest.get(key), int | float):
            parts.append(f"{key} {latest[key]:.3f}")
            break
    if job.best is not None and job.best.value is not None:
        parts.append(f"best {job.best.metric or ''} {job.best.value:.3f} @ epoch {job.best.epoch}")
    return "  ".join(parts)


def event_metrics(event: JobEvent) -> dict[str, Any]:
    if event.type != "metrics" or not event.data:
        return {}
    data = event.data.get("metrics", event.data)
    return data if isinstance(data, dict) else {}


def _event(sse: ServerSentEvent) -> JobEvent | None:
    try:
        payload = json.loads(sse.data)
    except ValueError:
        return None
    return JobEvent.model_validate(payload) if isinstance(payload, dict) else None


def newest_metrics(events: Iterable[JobEvent]) -> dict[str, Any]:
    """The most recent per-epoch metrics among events listed newest first."""
    for event in events:
        data = event_metrics(event)
        if "epoch" in data:
            return data
    return {}


class _Bar:
    """A live training bar fed by job snapshots and metrics events."""

    def __init__(self, progress: bool | None) -> None:
        self.bar: Any = training_bar() if wanted(progress) else NullProgress()
        self.task = 0
        self.latest: dict[str, Any] = {}

    def __enter__(self) -> _Bar:
        self.bar.__enter__()
        self.task = self.bar.add_task("job", total=None, status="", metric="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def show(self, job: Job) -> None:
        p = job.progress
        total = p.epochs if p and p.epochs else None
        completed = 0.0
        if p and p.epoch:
            # The epoch under way, counted by the share of its steps done.
            completed = p.epoch - 1 + ((p.step or 0) / p.steps if p.steps else 1)
        if job.status == "succeeded" and total:
            completed = total
        self.bar.update(
            self.task,
            description=f"{job.id} epoch {p.epoch if p and p.epoch else 0}/{total or '?'}",
            total=total,
            completed=completed,
            status=job.status,
            metric=metric_text(job, self.latest),
        )


class Jobs(SyncResource):
    def create(self, dataset: str | Dataset, base_model: str, **fields: Any) -> Job:
        """A fine-tuning job. Fields: split (an id) or split_seed/fractions, weights ("pretrained",
        "random" or a registered checkpoint), method ("lora", "full", "linear_probe" or a dict),
        hyperparameters (each may be "auto"), checkpoint_metric, seed, suffix, metadata."""
        return self._client.post(JOBS, Job, json=job_body(dataset, base_model, **fields))

    def get(self, job: str | Job) -> Job:
        return self._client.get(f"{JOBS}/{id_of(job)}", Job)

    def list(
        self, *, limit: int | None = None, after: str | None = None, status: str | None = None
    ) -> Page[Job]:
        return self._client.page(JOBS, Job, {"limit": limit, "after": after, "status": status})

    def cancel(self, job: str | Job) -> Job:
        return self._client.post(f"{JOBS}/{id_of(job)}/cancel", Job)

    def resume(self, job: str | Job) -> Job:
        """A failed or cancelled job continues from its last checkpoint."""
        return self._client.post(f"{JOBS}/{id_of(job)}/resume", Job)

    def events(self, job: str | Job, *, limit: int | None = None, after: str | None = None) -> Page[JobEvent]:
        return self._client.page(f"{JOBS}/{id_of(job)}/events", JobEvent, {"limit": limit, "after": after})

    def checkpoints(self, job: str | Job) -> builtins.list[Checkpoint]:
        return builtins.list(self._client.page(f"{JOBS}/{id_of(job)}/checkpoints", Checkpoint))

    def report(self, job: str | Job) -> JobReport:
        """The report's figures as data (test table, curves, reliability, operating points, subgroups)."""
        return self._client.get(f"{JOBS}/{id_of(job)}/report.json", JobReport)

    def stream(self, job: str | Job) -> Iterator[JobEvent]:
        """Events as they happen (server-sent events); ends when the job is finished."""
        for sse in self._client.events(f"{JOBS}/{id_of(job)}/events/stream"):
            if sse.event == "end":
                return
            if (event := _event(sse)) is not None:
                yield event

    def wait(
        self,
        job: str | Job,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        progress: bool | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job succeeds, fails or is cancelled, with a live bar (epoch, validation
        AUROC, best so far) when a person is watching. Returns the final job; never raises for a
        failed job (check `job.status` and `job.error`); TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with _Bar(progress) as bar:
            while True:
                current = self.get(job)
                bar.latest = newest_metrics(self.events(current, limit=20).data) or bar.latest
                bar.show(current)
                if on_update is not None:
                    on_update(current)
                if current.done:
                    return current
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {current.id} still {current.status} after {timeout}s")
                time.sleep(poll_interval)


class AsyncJobs(AsyncResource):
    async def create(self, dataset: str | Dataset, base_model: str, **fields: Any) -> Job:
        return await self._client.post(JOBS, Job, json=job_body(dataset, base_model, **fields))

    async def get(self, job: str | Job) -> Job:
        return await self._client.get(f"{JOBS}/{id_of(job)}", Job)

    async def list(
        self, *, limit: int | None = None, after: str | None = None, status: str | None = None
    ) -> AsyncPage[Job]:
        return await self._client.page(JOBS, Job, {"limit": limit, "after": after, "status": status})

    async def cancel(self, job: str | Job) -> Job:
        return await self._client.post(f"{JOBS}/{id_of(job)}/cancel", Job)

    async def resume(self, job: str | Job) -> Job:
        return await self._client.post(f"{JOBS}/{id_of(job)}/resume", Job)

    async def events(
        self, job: str | Job, *, limit: int | None = None, after: str | None = None
    ) -> AsyncPage[JobEvent]:
        path = f"{JOBS}/{id_of(job)}/events"
        return await self._client.page(path, JobEvent, {"limit": limit, "after": after})

    async def checkpoints(self, job: str | Job) -> builtins.list[Checkpoint]:
        page = await self._client.page(f"{JOBS}/{id_of(job)}/checkpoints", Checkpoint)
        return [c async for c in page]

    async def report(self, job: str | Job) -> JobReport:
        return await self._client.get(f"{JOBS}/{id_of(job)}/report.json", JobReport)

    async def stream(self, job: str | Job) -> AsyncIterator[JobEvent]:
        async for sse in self._client.events(f"{JOBS}/{id_of(job)}/events/stream"):
            if sse.event == "end":
                return
            if (event := _event(sse)) is not None:
                yield event

    async def wait(
        self,
        job: str | Job,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        progress: bool | None = None,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        with _Bar(progress) as bar:
            while True:
                current = await self.get(job)
                bar.latest = newest_metrics((await self.events(current, limit=20)).data) or bar.latest
                bar.show(current)
                if on_update is not None:
                    on_update(current)
                if current.done:
                    return current
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {current.id} still {current.status} after {timeout}s")
                await asyncio.sleep(poll_interval)

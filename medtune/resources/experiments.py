"""`client.experiments`: data-volume experiments: one job per training-set size and seed on nested
subsets of a split's training part; per-size test metrics, the epoch-time and learning-curve fits, and
the samples a target AUROC needs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from medtune.experiment_models import Experiment
from medtune.models import Dataset, Split
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of, seg
from medtune.resources.jobs import job_body

EXPERIMENTS = "/v1/fine-tuning/experiments"
# Hyperparameters that may be given as keywords (epochs=3) instead of inside `hyperparameters`.
HYPERPARAMETERS = {
    "epochs", "batch_size", "learning_rate", "weight_decay", "warmup_epochs", "early_stopping_patience",
    "image_size", "augmentation", "class_weighting", "gradient_checkpointing",
}  # fmt: skip
FIGURES = ("auroc_by_size", "epoch_time_by_size")


def experiment_body(
    *,
    type: str,
    dataset_id: str | Dataset,
    split_id: str | Split,
    sizes: list[int],
    seeds: list[int] | None,
    balanced: bool,
    base_model: str,
    labels: list[str] | None,
    target_auroc: float | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The POST body: the sweep, plus every job field (hyperparameters also as keywords)."""
    shortcuts = {k: fields.pop(k) for k in list(fields) if k in HYPERPARAMETERS}
    if shortcuts:
        fields["hyperparameters"] = {**(fields.get("hyperparameters") or {}), **shortcuts}
    body = job_body(dataset_id, base_model, split=split_id, **fields)
    sweep = {"type": type, "sizes": list(sizes), "seeds": seeds, "balanced": balanced, "labels": labels,
             "target_auroc": target_auroc}  # fmt: skip
    body.update({k: v for k, v in sweep.items() if v is not None})
    return body


def _late(experiment: Experiment, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"experiment {experiment.id} still {experiment.status} after {timeout}s")


class Experiments(SyncResource):
    def create(
        self,
        *,
        type: str = "data_volume",
        dataset_id: str | Dataset,
        split_id: str | Split,
        sizes: list[int],
        seeds: list[int] | None = None,
        balanced: bool = False,
        base_model: str,
        labels: list[str] | None = None,
        target_auroc: float | None = None,
        **fields: Any,
    ) -> Experiment:
        """One job per size and seed; `fields` are the job fields of `jobs.create` (weights, method,
        hyperparameters, ...), and hyperparameters may be keywords too (`epochs=3`)."""
        body = experiment_body(type=type, dataset_id=dataset_id, split_id=split_id, sizes=sizes, seeds=seeds,
                               balanced=balanced, base_model=base_model, labels=labels,
                               target_auroc=target_auroc, fields=fields)  # fmt: skip
        return self._client.post(EXPERIMENTS, Experiment, json=body)

    def get(self, experiment: str | Experiment, *, target_auroc: float | None = None) -> Experiment:
        """The experiment's runs and result; with `target_auroc`, `.target` says the samples it needs."""
        params = {"target_auroc": target_auroc} if target_auroc is not None else None
        return self._client.get(f"{EXPERIMENTS}/{id_of(experiment)}", Experiment, params=params)

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[Experiment]:
        """The project's experiments, newest first; iterating the page walks the following pages."""
        return self._client.page(EXPERIMENTS, Experiment, {"limit": limit, "after": after})

    def cancel(self, experiment: str | Experiment) -> Experiment:
        """Cancel the runs that have not ended; the result keeps what finished."""
        return self._client.post(f"{EXPERIMENTS}/{id_of(experiment)}/cancel", Experiment)

    def figure(self, experiment: str | Experiment, name: str) -> bytes:
        """A figure as PNG bytes: `auroc_by_size` or `epoch_time_by_size`."""
        return self._client.request(
            "GET", f"{EXPERIMENTS}/{id_of(experiment)}/figures/{seg(name)}.png"
        ).content

    def wait(
        self,
        experiment: str | Experiment,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        target_auroc: float | None = None,
    ) -> Experiment:
        """Poll until every run has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get(experiment, target_auroc=target_auroc)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            time.sleep(poll_interval)


class AsyncExperiments(AsyncResource):
    async def create(
        self,
        *,
        type: str = "data_volume",
        dataset_id: str | Dataset,
        split_id: str | Split,
        sizes: list[int],
        seeds: list[int] | None = None,
        balanced: bool = False,
        base_model: str,
        labels: list[str] | None = None,
        target_auroc: float | None = None,
        **fields: Any,
    ) -> Experiment:
        body = experiment_body(type=type, dataset_id=dataset_id, split_id=split_id, sizes=sizes, seeds=seeds,
                               balanced=balanced, base_model=base_model, labels=labels,
                               target_auroc=target_auroc, fields=fields)  # fmt: skip
        return await self._client.post(EXPERIMENTS, Experiment, json=body)

    async def get(self, experiment: str | Experiment, *, target_auroc: float | None = None) -> Experiment:
        params = {"target_auroc": target_auroc} if target_auroc is not None else None
        return await self._client.get(f"{EXPERIMENTS}/{id_of(experiment)}", Experiment, params=params)

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[Experiment]:
        return await self._client.page(EXPERIMENTS, Experiment, {"limit": limit, "after": after})

    async def cancel(self, experiment: str | Experiment) -> Experiment:
        return await self._client.post(f"{EXPERIMENTS}/{id_of(experiment)}/cancel", Experiment)

    async def figure(self, experiment: str | Experiment, name: str) -> bytes:
        response = await self._client.request(
            "GET", f"{EXPERIMENTS}/{id_of(experiment)}/figures/{seg(name)}.png"
        )
        return response.content

    async def wait(
        self,
        experiment: str | Experiment,
        *,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        target_auroc: float | None = None,
    ) -> Experiment:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.get(experiment, target_auroc=target_auroc)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            await asyncio.sleep(poll_interval)

"""`client.job_groups`: seed sweeps, one job per split seed, summarised as mean, sd and 95% CI."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from medtune.models import Dataset, JobGroup
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of
from medtune.resources.jobs import job_body

GROUPS = "/v1/fine-tuning/job-groups"


def _body(
    dataset: str | Dataset, base_model: str, split_seeds: list[int], fields: dict[str, Any]
) -> dict[str, Any]:
    return {**job_body(dataset, base_model, **fields), "split_seeds": list(split_seeds)}


def _late(group: JobGroup, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"job group {group.id} still {group.status} after {timeout}s")


class JobGroups(SyncResource):
    def create(
        self, dataset: str | Dataset, base_model: str, split_seeds: list[int], **fields: Any
    ) -> JobGroup:
        """One job per split seed, with the same job fields as `jobs.create`."""
        return self._client.post(GROUPS, JobGroup, json=_body(dataset, base_model, split_seeds, fields))

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[JobGroup]:
        """The project's seed sweeps, newest first; iterating the page walks the following pages."""
        return self._client.page(GROUPS, JobGroup, {"limit": limit, "after": after})

    def get(self, group: str | JobGroup) -> JobGroup:
        """The group's jobs and, over those that succeeded, `summary.metrics[test_auroc]` (and the other
        test metrics) as `{n, mean, sd, ci95: [low, high]}`."""
        return self._client.get(f"{GROUPS}/{id_of(group)}", JobGroup)

    def wait(
        self, group: str | JobGroup, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> JobGroup:
        """Poll until every job of the group has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get(group)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            time.sleep(poll_interval)


class AsyncJobGroups(AsyncResource):
    async def create(
        self, dataset: str | Dataset, base_model: str, split_seeds: list[int], **fields: Any
    ) -> JobGroup:
        return await self._client.post(GROUPS, JobGroup, json=_body(dataset, base_model, split_seeds, fields))

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[JobGroup]:
        return await self._client.page(GROUPS, JobGroup, {"limit": limit, "after": after})

    async def get(self, group: str | JobGroup) -> JobGroup:
        return await self._client.get(f"{GROUPS}/{id_of(group)}", JobGroup)

    async def wait(
        self, group: str | JobGroup, *, timeout: float | None = None, poll_interval: float = 2.0
    ) -> JobGroup:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.get(group)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            await asyncio.sleep(poll_interval)

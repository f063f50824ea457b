"""`client.job_groups`: seed sweeps, one job per split seed, summarised as mean, sd and 95% CI."""

from __future__ import annotations

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


class JobGroups(SyncResource):
    def create(
        self, dataset: str | Dataset, base_model: str, split_seeds: list[int], **fields: Any
    ) -> JobGroup:
        """One job per split seed, with the same job fields as `jobs.create`."""
        return self._client.post(GROUPS, JobGroup, json=_body(dataset, base_model, split_seeds, fields))

    def get(self, group: str | JobGroup) -> JobGroup:
        return self._client.get(f"{GROUPS}/{id_of(group)}", JobGroup)

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[JobGroup]:
        return self._client.page(GROUPS, JobGroup, {"limit": limit, "after": after})


class AsyncJobGroups(AsyncResource):
    async def create(
        self, dataset: str | Dataset, base_model: str, split_seeds: list[int], **fields: Any
    ) -> JobGroup:
        return await self._client.post(GROUPS, JobGroup, json=_body(dataset, base_model, split_seeds, fields))

    async def get(self, group: str | JobGroup) -> JobGroup:
        return await self._client.get(f"{GROUPS}/{id_of(group)}", JobGroup)

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[JobGroup]:
        return await self._client.page(GROUPS, JobGroup, {"limit": limit, "after": after})

"""`client.splits`: seeded patient-grouped stratified splits of a dataset, and their manifests."""

from __future__ import annotations

from typing import Any

from medtune.models import Dataset, Split
from medtune.resources._base import AsyncResource, SyncResource, id_of


def _body(seed: int | None, fractions: dict[str, float] | None, column: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if column is not None:
        body["column"] = column
    if seed is not None:
        body["seed"] = seed
    if fractions is not None:
        body["fractions"] = fractions
    return body


class Splits(SyncResource):
    def create(
        self,
        dataset: str | Dataset,
        *,
        seed: int | None = None,
        fractions: dict[str, float] | None = None,
        column: str | None = None,
    ) -> Split:
        """A split of the dataset's current version: `seed` (drawn when omitted), `fractions`
        ({train, val, test}), or `column="split"` to take the assignment from the labels CSV."""
        path = f"/v1/datasets/{id_of(dataset)}/splits"
        return self._client.post(path, Split, json=_body(seed, fractions, column))

    def get(self, dataset: str | Dataset, split: str | Split) -> Split:
        return self._client.get(f"/v1/datasets/{id_of(dataset)}/splits/{id_of(split)}", Split)

    def manifest(self, dataset: str | Dataset, split: str | Split) -> str:
        """The manifest CSV: image id, study and patient pseudonyms, split, labels."""
        path = f"/v1/datasets/{id_of(dataset)}/splits/{id_of(split)}/manifest"
        return self._client.request("GET", path).text


class AsyncSplits(AsyncResource):
    async def create(
        self,
        dataset: str | Dataset,
        *,
        seed: int | None = None,
        fractions: dict[str, float] | None = None,
        column: str | None = None,
    ) -> Split:
        path = f"/v1/datasets/{id_of(dataset)}/splits"
        return await self._client.post(path, Split, json=_body(seed, fractions, column))

    async def get(self, dataset: str | Dataset, split: str | Split) -> Split:
        return await self._client.get(f"/v1/datasets/{id_of(dataset)}/splits/{id_of(split)}", Split)

    async def manifest(self, dataset: str | Dataset, split: str | Split) -> str:
        path = f"/v1/datasets/{id_of(dataset)}/splits/{id_of(split)}/manifest"
        return (await self._client.request("GET", path)).text

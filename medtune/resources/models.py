"""`client.models`: the registry (promote a job, versions, aliases, archive) and prediction."""

from __future__ import annotations

import asyncio
import base64
import builtins
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medtune.models import (
    BatchPrediction,
    Dataset,
    Job,
    ModelComparison,
    ModelVersion,
    PredictResult,
    RegisteredModel,
    Split,
)
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of, seg
from medtune.resources._files import PathLike, content_type

MODELS = "/v1/models"
Input = PathLike | bytes


def _promote_body(job: str | Job, name: str, checkpoint: str | int) -> dict[str, Any]:
    return {"job_id": id_of(job), "name": name, "checkpoint": checkpoint}


def _sniff(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    return "application/dicom"


def predict_request(inputs: Input | Sequence[Input]) -> dict[str, Any]:
    """One image goes as its own body (application/dicom, image/png or image/jpeg); several as
    multipart `files` parts."""
    items: list[Input] = list(inputs) if isinstance(inputs, list | tuple) else [inputs]  # type: ignore[list-item]
    if not items:
        raise ValueError("predict needs at least one image")
    if len(items) == 1:
        data, kind = _read(items[0])
        return {"content": data, "headers": {"Content-Type": kind}}

    def files() -> list[tuple[str, Any]]:
        parts = []
        for i, item in enumerate(items):
            data, kind = _read(item)
            name = Path(item).name if not isinstance(item, bytes) else f"image-{i}"
            parts.append(("files", (name, data, kind)))
        return parts

    return {"files": files}


def _read(item: Input) -> tuple[bytes, str]:
    if isinstance(item, bytes):
        return item, _sniff(item)
    path = Path(item)
    data = path.read_bytes()
    kind = content_type(path.name)
    return data, kind if kind != "application/octet-stream" else _sniff(data)


def instances_body(inputs: Sequence[Input]) -> dict[str, Any]:
    """The JSON form: `{instances: [{dicom_base64 | image_base64}]}`."""
    out = []
    for item in inputs:
        data, kind = _read(item)
        key = "dicom_base64" if kind == "application/dicom" else "image_base64"
        out.append({key: base64.b64encode(data).decode()})
    return {"instances": out}


def _late(batch: BatchPrediction, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"batch prediction {batch.id} still {batch.status} after {timeout}s")


def _batch_body(dataset: str | Dataset, split: str | Split, part: str) -> dict[str, Any]:
    return {"dataset_id": id_of(dataset), "split_id": id_of(split), "split": part}


def _predict_kwargs(inputs: Input | Sequence[Input], as_json: bool) -> dict[str, Any]:
    if as_json:
        items: list[Input] = list(inputs) if isinstance(inputs, list | tuple) else [inputs]  # type: ignore[list-item]
        return {"json": instances_body(items)}
    return predict_request(inputs)


class Models(SyncResource):
    def promote(self, job: str | Job, name: str, *, checkpoint: str | int = "best") -> ModelVersion:
        """Register the job's best (or a given epoch's) checkpoint as the next version of `name`."""
        return self._client.post(MODELS, ModelVersion, json=_promote_body(job, name, checkpoint))

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[RegisteredModel]:
        return self._client.page(MODELS, RegisteredModel, {"limit": limit, "after": after})

    def get(self, ref: str) -> RegisteredModel:
        """A model (by `name`, `name:N` or `name@alias`) with the version that ref serves."""
        return self._client.get(f"{MODELS}/{seg(ref)}", RegisteredModel)

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        return builtins.list(self._client.page(f"{MODELS}/{seg(name)}/versions", ModelVersion))

    def version(self, name: str, version: int) -> ModelVersion:
        return self._client.get(f"{MODELS}/{seg(name)}/versions/{int(version)}", ModelVersion)

    def compare(self, name: str, a: int, b: int) -> ModelComparison:
        """Version b against version a on their shared test split: DeLong (AUROC difference b - a, 95% CI,
        p-value) and McNemar at each version's threshold, per label."""
        params = {"a": int(a), "b": int(b)}
        return self._client.get(f"{MODELS}/{seg(name)}/compare", ModelComparison, params=params)

    def set_alias(self, name: str, alias: str, version: int, *, force: bool = False) -> RegisteredModel:
        """Point `alias` (e.g. "champion") at a version; moving it to a version with a lower test
        AUROC than the current holder's needs `force=True`."""
        body = {"version": int(version), "force": force}
        return self._client.put(f"{MODELS}/{seg(name)}/aliases/{seg(alias)}", RegisteredModel, json=body)

    def batch_predict(
        self, ref: str, dataset: str | Dataset, split: str | Split, *, part: str = "test"
    ) -> BatchPrediction:
        """Predictions for a split's images, on the worker; poll with `get_batch` (CSV + metrics)."""
        body = _batch_body(dataset, split, part)
        return self._client.post(f"{MODELS}/{seg(ref)}/batch-predictions", BatchPrediction, json=body)

    def get_batch(self, batch: str | BatchPrediction) -> BatchPrediction:
        return self._client.get(f"{MODELS}/batch-predictions/{id_of(batch)}", BatchPrediction)

    def wait_batch(
        self, batch: str | BatchPrediction, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> BatchPrediction:
        """Poll until the batch succeeds or fails (`count`, `metrics`, `error`); TimeoutError after
        `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.get_batch(batch)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            time.sleep(poll_interval)

    def archive(self, name: str, version: int) -> ModelVersion:
        """The version stops serving; its record stays."""
        return self._client.delete(f"{MODELS}/{seg(name)}/versions/{int(version)}", ModelVersion)

    def predict(
        self, ref: str, inputs: Input | Sequence[Input], *, explain: bool = False, as_json: bool = False
    ) -> PredictResult:
        """Probabilities for one or more images (DICOM, PNG or JPEG; paths or bytes). `ref` is `name`
        (the champion alias, else the latest), `name:N` or `name@alias`; `explain` adds heatmaps."""
        path = f"{MODELS}/{seg(ref)}/predict"
        params = {"explain": "true"} if explain else None
        response = self._client.request(
            "POST", path, params=params, idempotent=True, **_predict_kwargs(inputs, as_json)
        )
        return PredictResult.model_validate(response.json())


class AsyncModels(AsyncResource):
    async def promote(self, job: str | Job, name: str, *, checkpoint: str | int = "best") -> ModelVersion:
        return await self._client.post(MODELS, ModelVersion, json=_promote_body(job, name, checkpoint))

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[RegisteredModel]:
        return await self._client.page(MODELS, RegisteredModel, {"limit": limit, "after": after})

    async def get(self, ref: str) -> RegisteredModel:
        return await self._client.get(f"{MODELS}/{seg(ref)}", RegisteredModel)

    async def versions(self, name: str) -> builtins.list[ModelVersion]:
        page = await self._client.page(f"{MODELS}/{seg(name)}/versions", ModelVersion)
        return [v async for v in page]

    async def version(self, name: str, version: int) -> ModelVersion:
        return await self._client.get(f"{MODELS}/{seg(name)}/versions/{int(version)}", ModelVersion)

    async def compare(self, name: str, a: int, b: int) -> ModelComparison:
        params = {"a": int(a), "b": int(b)}
        return await self._client.get(f"{MODELS}/{seg(name)}/compare", ModelComparison, params=params)

    async def set_alias(self, name: str, alias: str, version: int, *, force: bool = False) -> RegisteredModel:
        body = {"version": int(version), "force": force}
        return await self._client.put(
            f"{MODELS}/{seg(name)}/aliases/{seg(alias)}", RegisteredModel, json=body
        )

    async def archive(self, name: str, version: int) -> ModelVersion:
        return await self._client.delete(f"{MODELS}/{seg(name)}/versions/{int(version)}", ModelVersion)

    async def batch_predict(
        self, ref: str, dataset: str | Dataset, split: str | Split, *, part: str = "test"
    ) -> BatchPrediction:
        body = _batch_body(dataset, split, part)
        return await self._client.post(f"{MODELS}/{seg(ref)}/batch-predictions", BatchPrediction, json=body)

    async def get_batch(self, batch: str | BatchPrediction) -> BatchPrediction:
        return await self._client.get(f"{MODELS}/batch-predictions/{id_of(batch)}", BatchPrediction)

    async def wait_batch(
        self, batch: str | BatchPrediction, *, timeout: float | None = None, poll_interval: float = 1.0
    ) -> BatchPrediction:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = await self.get_batch(batch)
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise _late(current, timeout)
            await asyncio.sleep(poll_interval)

    async def predict(
        self, ref: str, inputs: Input | Sequence[Input], *, explain: bool = False, as_json: bool = False
    ) -> PredictResult:
        path = f"{MODELS}/{seg(ref)}/predict"
        params = {"explain": "true"} if explain else None
        response = await self._client.request(
            "POST", path, params=params, idempotent=True, **_predict_kwargs(inputs, as_json)
        )
        return PredictResult.model_validate(response.json())

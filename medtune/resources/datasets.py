"""`client.datasets`: create, get, list, upload files (parallel, retried, with a progress bar), labels,
images, and wait for ingestion to finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx

from medtune._progress import NullProgress, upload_bar, wanted
from medtune.errors import APIConnectionError, APIError
from medtune.models import Dataset, DeidReport, Erasure, FileOutcome, Image, LabelImport, UploadResult
from medtune.pagination import AsyncPage, Page
from medtune.resources._base import AsyncResource, SyncResource, id_of
from medtune.resources._files import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_FILES,
    Batch,
    BatchFiles,
    ByteCounter,
    PathLike,
    UploadFile,
    expand,
    plan,
)

# Reading a big zip on the server takes a while; only connecting must be quick.
UPLOAD_TIMEOUT = httpx.Timeout(30.0, read=900.0, write=900.0)


def _create_body(
    name: str, task: str, labels: list[str], options: dict[str, Any] | None, extra: dict[str, Any],
    dicom_ae_title: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    body = {"name": name, "task": task, "labels": list(labels), "options": {**(options or {}), **extra}}
    return body if dicom_ae_title is None else {**body, "dicom_ae_title": dicom_ae_title}


def _labels_part(csv: PathLike | bytes, field: str = "file") -> Callable[[], list[tuple[str, Any]]]:
    def files() -> list[tuple[str, Any]]:
        if isinstance(csv, bytes):
            return [(field, ("labels.csv", csv, "text/csv"))]
        path = Path(csv)
        return [(field, (path.name, path.open("rb"), "text/csv"))]

    return files


def _merge(batch: Batch, answer: dict[str, Any]) -> list[FileOutcome]:
    """The server numbers files within one request; renumber them within the whole upload."""
    outcomes = [FileOutcome.model_validate(item) for item in answer.get("data", [])]
    for outcome in outcomes:
        outcome.index += batch.offset
    return outcomes


def _failed(batch: Batch) -> list[FileOutcome]:
    return [FileOutcome(index=batch.offset + i, filename=f.name, outcome="failed", reason="connection")
            for i, f in enumerate(batch.files)]  # fmt: skip


class _Upload:
    """One upload's plan and bookkeeping, the same for threads and asyncio tasks."""

    def __init__(
        self, paths: PathLike | Iterable[PathLike], batch_files: int, batch_bytes: int, progress: bool | None
    ) -> None:
        self.files: list[UploadFile] = expand(paths)
        self.batches = plan(self.files, batch_files, batch_bytes)
        self.total = sum(f.size for f in self.files)
        self.bar: Any = upload_bar() if wanted(progress) and self.files else NullProgress()
        self.task = 0
        self.done_files = 0
        self.counter = ByteCounter(self._advance)
        self.outcomes: list[FileOutcome] = []

    def __enter__(self) -> _Upload:
        self.bar.__enter__()
        self.task = self.bar.add_task("uploading", total=self.total, files=f"0/{len(self.files)} files")
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def _advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def finished(self, batch: Batch, outcomes: list[FileOutcome]) -> None:
        self.outcomes.extend(outcomes)
        self.done_files += len(batch.files)
        self.bar.update(self.task, files=f"{self.done_files}/{len(self.files)} files")

    def result(self) -> UploadResult:
        ordered = sorted(self.outcomes, key=lambda o: o.index)
        failed = [o.filename for o in ordered if o.outcome == "failed"]
        return UploadResult(data=ordered, failed=failed)


class Datasets(SyncResource):
    def create(
        self,
        name: str,
        task: str = "binary",
        labels: list[str] | None = None,
        options: dict[str, Any] | None = None,
        *,
        dicom_ae_title: str | None = None,
        **option_kwargs: Any,
    ) -> Dataset:
        """A dataset: `task` is "binary" or "multilabel"; options (min_image_size, modalities,
        cache_size, dates, retain_patient_characteristics, burned_in_annotation) as a dict or keywords.
        `dicom_ae_title`: the called AE title a PACS sends this dataset's studies to."""
        body = _create_body(name, task, labels or [], options, option_kwargs, dicom_ae_title)
        return self._client.post("/v1/datasets", Dataset, json=body)

    def get(self, dataset: str | Dataset) -> Dataset:
        return self._client.get(f"/v1/datasets/{id_of(dataset)}", Dataset)

    def list(self, *, limit: int | None = None, after: str | None = None) -> Page[Dataset]:
        return self._client.page("/v1/datasets", Dataset, {"limit": limit, "after": after})

    def upload(
        self,
        dataset: str | Dataset,
        paths: PathLike | Iterable[PathLike],
        *,
        manifest: PathLike | None = None,
        parallel: int = 4,
        batch_files: int = DEFAULT_BATCH_FILES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        progress: bool | None = None,
    ) -> UploadResult:
        """Upload DICOM files, folders of them (walked recursively) and zips, `parallel` requests at a
        time. Each request is retried on connection errors and 502/503/504 (the server stores an
        instance once, so a resend is harmless). Files whose request still fails are reported in
        `result.failed` with outcome "failed"; an error answer (413, 415, ...) raises.

        `manifest`: the CSV for PNG/JPEG datasets (`path, patient_id, study_id, <labels>`), sent with
        every request; paths are matched relative to the folder given, then by file name.
        """
        path = f"/v1/datasets/{id_of(dataset)}/files"
        manifest_path = Path(manifest) if manifest is not None else None
        with _Upload(paths, batch_files, batch_bytes, progress) as job:

            def send(batch: Batch) -> list[FileOutcome]:
                files = BatchFiles(batch, job.counter, manifest_path)
                try:
                    response = self._client.request("POST", path, files=files, idempotent=True,
                                                    timeout=UPLOAD_TIMEOUT)  # fmt: skip
                except APIConnectionError:
                    return _failed(batch)
                except APIError as exc:
                    if exc.status_code in (502, 503, 504):
                        return _failed(batch)
                    raise
                return _merge(batch, response.json())

            with ThreadPoolExecutor(
                max_workers=max(1, parallel), thread_name_prefix="medtune-upload"
            ) as pool:
                futures = {pool.submit(send, b): b for b in job.batches}
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                for future in pending:
                    future.cancel()
                for future in done:
                    if (exc := future.exception()) is not None:
                        raise exc
                    job.finished(futures[future], future.result())
        return job.result()

    def upload_labels(self, dataset: str | Dataset, csv: PathLike | bytes) -> LabelImport:
        """A labels CSV: a key column (AccessionNumber or StudyInstanceUID, original values) and one
        0/1 column per label (optionally `split`). Keys are matched by HMAC on the server."""
        response = self._client.request(
            "POST", f"/v1/datasets/{id_of(dataset)}/labels", files=_labels_part(csv)
        )
        return LabelImport.model_validate(response.json())

    def images(
        self,
        dataset: str | Dataset,
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> Page[Image]:
        params = {"status": status, "limit": limit, "after": after}
        return self._client.page(f"/v1/datasets/{id_of(dataset)}/images", Image, params)

    def deid_report(self, dataset: str | Dataset) -> DeidReport:
        """What de-identification did in the dataset: counts per action, what options kept, rejections."""
        return self._client.get(f"/v1/datasets/{id_of(dataset)}/deid-report", DeidReport)

    def download_dicom(self, dataset: str | Dataset, image_id: str) -> bytes:
        """The de-identified DICOM of one image."""
        return self._client.request(
            "GET", f"/v1/datasets/{id_of(dataset)}/images/{id_of(image_id)}/dicom"
        ).content

    def delete_image(self, dataset: str | Dataset, image_id: str) -> Erasure:
        """Erase one image everywhere (objects, pixel cache, rows, MLflow artifacts naming it)."""
        return self._client.delete(f"/v1/datasets/{id_of(dataset)}/images/{id_of(image_id)}", Erasure)

    def delete(self, dataset: str | Dataset) -> Erasure:
        """Erase every image of the dataset and delete it; jobs and model versions trained on it are
        flagged `data_erased`, not retrained."""
        return self._client.delete(f"/v1/datasets/{id_of(dataset)}", Erasure)

    def wait(
        self,
        dataset: str | Dataset,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        on_update: Callable[[Dataset], None] | None = None,
    ) -> Dataset:
        """Poll until ingestion is over (`status == "ready"`); TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.get(dataset)
            if on_update is not None:
                on_update(current)
            if current.status != "ingesting":
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"dataset {current.id} still ingesting after {timeout}s")
            time.sleep(poll_interval)


class AsyncDatasets(AsyncResource):
    async def create(
        self,
        name: str,
        task: str = "binary",
        labels: list[str] | None = None,
        options: dict[str, Any] | None = None,
        *,
        dicom_ae_title: str | None = None,
        **option_kwargs: Any,
    ) -> Dataset:
        body = _create_body(name, task, labels or [], options, option_kwargs, dicom_ae_title)
        return await self._client.post("/v1/datasets", Dataset, json=body)

    async def get(self, dataset: str | Dataset) -> Dataset:
        return await self._client.get(f"/v1/datasets/{id_of(dataset)}", Dataset)

    async def list(self, *, limit: int | None = None, after: str | None = None) -> AsyncPage[Dataset]:
        return await self._client.page("/v1/datasets", Dataset, {"limit": limit, "after": after})

    async def upload(
        self,
        dataset: str | Dataset,
        paths: PathLike | Iterable[PathLike],
        *,
        manifest: PathLike | None = None,
        parallel: int = 4,
        batch_files: int = DEFAULT_BATCH_FILES,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        progress: bool | None = None,
    ) -> UploadResult:
        """The async mirror of `Datasets.upload`: at most `parallel` requests in flight."""
        path = f"/v1/datasets/{id_of(dataset)}/files"
        manifest_path = Path(manifest) if manifest is not None else None
        limiter = asyncio.Semaphore(max(1, parallel))
        with _Upload(paths, batch_files, batch_bytes, progress) as job:

            async def send(batch: Batch) -> None:
                async with limiter:
                    files = BatchFiles(batch, job.counter, manifest_path)
                    try:
                        response = await self._client.request("POST", path, files=files, idempotent=True,
                                                              timeout=UPLOAD_TIMEOUT)  # fmt: skip
                        outcomes = _merge(batch, response.json())
                    except APIConnectionError:
                        outcomes = _failed(batch)
                    except APIError as exc:
                        if exc.status_code not in (502, 503, 504):
                            raise
                        outcomes = _failed(batch)
                job.finished(batch, outcomes)

            async with asyncio.TaskGroup() as group:
                for batch in job.batches:
                    group.create_task(send(batch))
        return job.result()

    async def upload_labels(self, dataset: str | Dataset, csv: PathLike | bytes) -> LabelImport:
        response = await self._client.request(
            "POST", f"/v1/datasets/{id_of(dataset)}/labels", files=_labels_part(csv)
        )
        return LabelImport.model_validate(response.json())

    async def images(
        self,
        dataset: str | Dataset,
        *,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> AsyncPage[Image]:
        params = {"status": status, "limit": limit, "after": after}
        return await self._client.page(f"/v1/datasets/{id_of(dataset)}/images", Image, params)

    async def deid_report(self, dataset: str | Dataset) -> DeidReport:
        return await self._client.get(f"/v1/datasets/{id_of(dataset)}/deid-report", DeidReport)

    async def download_dicom(self, dataset: str | Dataset, image_id: str) -> bytes:
        response = await self._client.request(
            "GET", f"/v1/datasets/{id_of(dataset)}/images/{id_of(image_id)}/dicom"
        )
        return response.content

    async def delete_image(self, dataset: str | Dataset, image_id: str) -> Erasure:
        path = f"/v1/datasets/{id_of(dataset)}/images/{id_of(image_id)}"
        return await self._client.delete(path, Erasure)

    async def delete(self, dataset: str | Dataset) -> Erasure:
        return await self._client.delete(f"/v1/datasets/{id_of(dataset)}", Erasure)

    async def wait(
        self,
        dataset: str | Dataset,
        *,
        timeout: float = 600.0,
        poll_interval: float = 1.0,
        on_update: Callable[[Dataset], None] | None = None,
    ) -> Dataset:
        deadline = time.monotonic() + timeout
        while True:
            current = await self.get(dataset)
            if on_update is not None:
                on_update(current)
            if current.status != "ingesting":
                return current
            if time.monotonic() >= deadline:
                raise TimeoutError(f"dataset {current.id} still ingesting after {timeout}s")
            await asyncio.sleep(poll_interval)

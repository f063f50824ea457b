"""A labelled, split dataset made over REST (upload, labels CSV, ingestion by a running worker, split) and
fine-tuning jobs on it, for tests of jobs against a live stack; `client` is any httpx.Client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.live import sample_files
from tests.services import wait_for

TINY = {"epochs": 2, "batch_size": 4, "image_size": 64, "augmentation": "none", "warmup_epochs": 0}
TERMINAL = ("succeeded", "failed", "cancelled")


def call(client: Any, method: str, path: str, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
    r = client.request(method, path, headers=headers, **kw)
    assert r.status_code in (200, 201, 202), r.text
    out: dict[str, Any] = r.json()
    return out


def new_dataset(client: Any, headers: dict[str, str], name: str) -> str:
    body = {"name": name, "task": "binary", "labels": ["finding"],
            "options": {"min_image_size": 64, "cache_size": 64}}  # fmt: skip
    return str(call(client, "POST", "/v1/datasets", headers, json=body)["id"])


def upload(client: Any, headers: dict[str, str], dataset_id: str, paths: list[Path]) -> list[str]:
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in paths]
    out = call(client, "POST", f"/v1/datasets/{dataset_id}/files", headers, files=files)["data"]
    assert [o["outcome"] for o in out] == ["queued"] * len(paths), out
    return [str(o["image_id"]) for o in out]


def wait_ready(client: Any, headers: dict[str, str], dataset_id: str, timeout: float = 120) -> dict[str, Any]:
    def ready() -> Any:
        got = call(client, "GET", f"/v1/datasets/{dataset_id}", headers)
        return got if got["status"] == "ready" else None

    out: dict[str, Any] = wait_for(ready, timeout, 0.5, what=f"dataset {dataset_id} to be ingested")
    return out


def labelled_split(client: Any, headers: dict[str, str], folder: Path, patients: int = 16) -> tuple[str, str]:
    """(dataset id, split id): `patients` radiographs with a `finding` label, ingested and split."""
    paths, labels = sample_files(folder, patients=patients)
    dataset_id = new_dataset(client, headers, folder.name)
    upload(client, headers, dataset_id, paths)
    csv = {"file": ("labels.csv", labels.read_bytes(), "text/csv")}
    call(client, "POST", f"/v1/datasets/{dataset_id}/labels", headers, files=csv)
    assert wait_ready(client, headers, dataset_id)["counts"]["accepted"] == patients
    body = {"seed": 3, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
    split = call(client, "POST", f"/v1/datasets/{dataset_id}/splits", headers, json=body)
    return dataset_id, str(split["id"])


def create_job(
    client: Any, headers: dict[str, str], dataset_id: str, split_id: str, **hyperparameters: Any
) -> dict[str, Any]:
    body = {"dataset_id": dataset_id, "split_id": split_id, "base_model": "test_resnet", "weights": "random",
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}},
            "hyperparameters": {**TINY, **hyperparameters}}  # fmt: skip
    return call(client, "POST", "/v1/fine-tuning/jobs", headers, json=body)


def get_job(client: Any, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    return call(client, "GET", f"/v1/fine-tuning/jobs/{job_id}", headers)


def wait_job(
    client: Any, headers: dict[str, str], job_id: str, statuses: tuple[str, ...] = TERMINAL,
    timeout: float = 180, log: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """The job once its status is one of `statuses`; on timeout the error carries log() when given."""
    try:
        out: dict[str, Any] = wait_for(
            lambda: (j := get_job(client, headers, job_id))["status"] in statuses and j,
            timeout, 0.25, what=f"job {job_id} to reach {statuses}",
        )  # fmt: skip
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{log() if log else ''}") from None
    return out

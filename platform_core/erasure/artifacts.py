"""What erasure removes outside the database: stored objects, CSVs in the object store and MLflow
artifacts that name erased images.

A text artifact (CSV, TSV, text, JSON, Markdown) that names an erased image id is rewritten without
the lines that name it when it is line-oriented (CSV, TSV, text) and deleted whole otherwise, through
MLflow's artifact repository API, so it works the same on local, S3 and mlflow-artifacts stores.
Binary artifacts (weights, plots) name no image. MLflow metrics and params are not rewritten: they
hold numbers and hyperparameters, never image ids.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from platform_core.datasets.labels import read_groups, write_groups
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.erasure")

LINE_SUFFIXES = (".csv", ".tsv", ".txt")
TEXT_SUFFIXES = (*LINE_SUFFIXES, ".json", ".md", ".yaml", ".yml")
MAX_SCAN_BYTES = 256 * 1024 * 1024


def delete_objects(store: ObjectStore, keys: Iterable[str | None]) -> int:
    """Delete each key that exists; the count is of objects actually removed."""
    n = 0
    for key in sorted({k for k in keys if k}):
        if store.exists(key):
            store.delete(key)
            n += 1
    return n


def delete_prefix(store: ObjectStore, prefix: str) -> int:
    keys = list(store.list(prefix))
    for key in keys:
        store.delete(key)
    return len(keys)


def drop_label_groups(store: ObjectStore, keys_by_dataset: dict[str, set[str]]) -> int:
    """Rewrite each dataset's label-groups file without the erased studies' keys; the count is of
    files rewritten (a group value is a category, but its key still points at the patient's study)."""
    n = 0
    for dataset_id, keys in sorted(keys_by_dataset.items()):
        groups = read_groups(store, dataset_id)
        kept = {k: g for k, g in groups.items() if k not in keys}
        if len(kept) < len(groups):
            write_groups(store, dataset_id, kept)
            n += 1
    return n


def without_lines(data: bytes, image_ids: frozenset[str]) -> tuple[bytes, int]:
    """The text with every line naming one of the ids dropped, and how many lines went."""
    kept: list[bytes] = []
    dropped = 0
    for line in data.splitlines(keepends=True):
        if any(i.encode() in line for i in image_ids):
            dropped += 1
        else:
            kept.append(line)
    return b"".join(kept), dropped


def names_any(data: bytes, image_ids: frozenset[str]) -> bool:
    return any(i.encode() in data for i in image_ids)


def rewrite_objects(store: ObjectStore, keys: Iterable[str], image_ids: frozenset[str]) -> int:
    """Rewrite line-oriented objects (batch-prediction CSVs) without the erased images' lines."""
    n = 0
    for key in sorted(set(keys)):
        try:
            data = store.get_bytes(key)
        except KeyError:
            continue
        clean, dropped = without_lines(data, image_ids)
        if dropped:
            store.put_bytes(key, clean, "text/csv")
            n += 1
    return n


def rewrite_predictions(store: ObjectStore, keys: Iterable[str], image_ids: frozenset[str]) -> int:
    """Rewrite per-image prediction documents ({image_ids, y, p, ...}) without the erased images."""
    n = 0
    for key in sorted(set(keys)):
        try:
            doc = json.loads(store.get_bytes(key))
        except KeyError:
            continue
        keep = [i for i, image_id in enumerate(doc.get("image_ids", [])) if image_id not in image_ids]
        if len(keep) == len(doc.get("image_ids", [])):
            continue
        for field in ("image_ids", "y", "p"):
            if field in doc:
                doc[field] = [doc[field][i] for i in keep]
        store.put_bytes(key, json.dumps(doc).encode(), "application/json")
        n += 1
    return n


def scrub_mlflow_runs(tracking_uri: str | None, run_ids: Sequence[str], image_ids: frozenset[str]) -> int:
    """Rewrite or delete the runs' text artifacts that name erased images; the count touched."""
    if not tracking_uri or not run_ids or not image_ids:
        return 0
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    touched = 0
    for run_id in sorted(set(run_ids)):
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                continue  # deleted from MLflow already: nothing of it to scrub
            raise
        repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=tracking_uri)
        for path in _text_artifacts(repo, None):
            touched += _scrub_one(repo, path, image_ids)
    return touched


def _text_artifacts(repo: Any, path: str | None) -> Iterator[str]:
    for info in repo.list_artifacts(path):
        if info.is_dir:
            yield from _text_artifacts(repo, info.path)
        elif info.path.lower().endswith(TEXT_SUFFIXES) and (info.file_size or 0) <= MAX_SCAN_BYTES:
            yield info.path


def _scrub_one(repo: Any, path: str, image_ids: frozenset[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(repo.download_artifacts(path, tmp))
        data = local.read_bytes()
        if not names_any(data, image_ids):
            return 0
        parent = str(PurePosixPath(path).parent)
        if path.lower().endswith(LINE_SUFFIXES):
            clean, _dropped = without_lines(data, image_ids)
            local.write_bytes(clean)
            repo.log_artifact(str(local), None if parent == "." else parent)
        else:
            repo.delete_artifacts(path)
        log.info("erasure rewrote an MLflow artifact of %d bytes", len(data))
        return 1

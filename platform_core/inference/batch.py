"""Batch predictions over one split of an ingested dataset: a CSV per job and, with labels, metrics.

Runs in the `infer` worker through the same serving engine (and the same pixel cache) as REST.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from platform_core.config import Settings
from platform_core.datasets import repository as datasets
from platform_core.db.session import unit_of_work
from platform_core.registry import repository as registry
from platform_core.splits import repository as splits
from platform_core.splits.models import Split
from platform_core.storage import ObjectStore

Row = tuple[str, str, dict[str, Any]]  # image id, pixel cache key, labels


def split_rows(session: Session, split: Split, part: str) -> list[Row]:
    """The images of one part of a split that have a pixel cache, in a stable order, with their labels."""
    members = splits.part_labels(session, split, part)
    keys = datasets.cache_keys(session, [image_id for image_id, _ in members])
    return [(i, k, labels) for i, labels in members if (k := keys.get(i))]


def labelled(rows: list[Row], labels: list[str]) -> list[int]:
    """Indices of the rows whose every label is known."""
    return [j for j, r in enumerate(rows) if all(r[2].get(n) is not None for n in labels)]


def fail(session: Session, batch_id: str, error: str) -> None:
    """End an unfinished batch prediction as failed, with why."""
    batch = registry.find_batch(session, batch_id)
    if batch is None or batch.status in ("succeeded", "failed"):
        return
    batch.status, batch.error = "failed", error[:2000]
    batch.finished_at = datetime.now(UTC)
    session.flush()


def run(sessions: sessionmaker[Session], store: ObjectStore, settings: Settings, batch_id: str) -> str:
    """Idempotent: a finished job is left as it is."""
    from platform_core.inference import serving
    from platform_core.training import metrics as M

    with unit_of_work(sessions) as s:
        batch = registry.find_batch(s, batch_id)
        if batch is None or batch.status in ("succeeded", "failed"):
            return batch.status if batch else "missing"
        batch.status = "running"
    with sessions() as s:
        batch = registry.find_batch(s, batch_id)
        assert batch is not None
        version = registry.get_version(s, batch.version_id)
        split = splits.find_split(s, batch.split_id)
        assert version is not None and split is not None
        manifest = version.model_manifest
        rows = split_rows(s, split, batch.split)
    try:
        preds = serving.predict_cached(settings, store, manifest, [k for _, k, _ in rows])
    except Exception as exc:
        with unit_of_work(sessions) as s:
            fail(s, batch_id, f"{type(exc).__name__}: {exc}")
        return "failed"
    labels = list(manifest.adapter.labels)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", *(f"p_{n}" for n in labels), *(f"predicted_{n}" for n in labels)])
    for (image_id, _, _), p in zip(rows, preds, strict=True):
        writer.writerow([image_id, *(repr(p["probabilities"][n]) for n in labels),
                         *(int(p["predicted"][n]) for n in labels)])  # fmt: skip
    key = f"batch_predictions/{batch_id}/predictions.csv"
    store.put_bytes(key, buf.getvalue().encode(), "text/csv")
    metrics = None
    known = labelled(rows, labels)
    if known:
        y = np.asarray([[rows[j][2][n] for n in labels] for j in known], dtype=np.float32)
        prob = np.asarray([[preds[j]["probabilities"][n] for n in labels] for j in known], dtype=np.float64)
        thresholds = [manifest.adapter.threshold(n) for n in labels]
        metrics = {"n": len(known), **M.compute(y, prob, labels, thresholds)}
    with unit_of_work(sessions) as s:
        done = registry.find_batch(s, batch_id)
        assert done is not None
        done.status, done.output_key, done.count, done.metrics = "succeeded", key, len(rows), metrics
        done.finished_at = datetime.now(UTC)
    return "succeeded"

"""Evaluate a version promoted from a non-best epoch: Youden thresholds on validation, test metrics.

Training evaluates only its best epoch; every epoch's adapter is kept as a checkpoint, so a version
promoted from another epoch is evaluated here, on the `infer` worker, through the serving engine and
the same pixel cache and split as training (the same evaluation function too). Until then the version
is `evaluating` and does not serve. If it cannot be evaluated (no labelled validation images, say), it
serves with the default thresholds and its manifest says so (`thresholds_source: "default"`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from platform_core.artifacts import ModelManifest, store_manifest
from platform_core.config import Settings
from platform_core.db.session import unit_of_work
from platform_core.registry.models import ModelVersion
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.registry")

TEST_KEYS = ("macro", "per_label", "ci95", "n_test")


def run(sessions: sessionmaker[Session], store: ObjectStore, settings: Settings, version_id: str) -> str:
    """Idempotent: a version that is not `evaluating` any more is left as it is."""
    from platform_core.inference.batch import split_rows
    from platform_core.jobs import repository as jobs
    from platform_core.splits import repository as splits

    with sessions() as s:
        version = s.get(ModelVersion, version_id)
        if version is None or version.status != "evaluating":
            return version.status if version else "missing"
        manifest = version.model_manifest
        job = jobs.find_job(s, version.job_id) if version.job_id else None
        split = splits.find_split(s, job.split_id) if job else None
        seed = int(job.seed) if job else 0
        parts = {p: split_rows(s, split, p) for p in ("val", "test")} if split else {}
    try:
        if not parts:
            raise ValueError("the job's split no longer exists")
        evaluation: dict[str, Any] = _evaluate(settings, store, manifest, parts, seed)
    except Exception as exc:  # the version still serves, at the default thresholds, and says so
        log.warning("evaluation of version %s failed: %s", version_id, exc)
        evaluation = failed(f"{type(exc).__name__}: {exc}")
    return record(sessions, store, version_id, evaluation)


def failed(error: str) -> dict[str, Any]:
    """The evaluation of a version that could not be evaluated: it serves at the default thresholds."""
    return {"thresholds_source": "default", "error": error[:2000]}


def record(
    sessions: sessionmaker[Session], store: ObjectStore, version_id: str, evaluation: dict[str, Any]
) -> str:
    """Write the evaluation into the version's manifest and make it `ready` (if it still evaluates)."""
    with unit_of_work(sessions) as s:
        version = s.get(ModelVersion, version_id, with_for_update=True)
        if version is None or version.status != "evaluating":
            return version.status if version else "missing"
        manifest = version.model_manifest.evaluated(evaluation)
        store_manifest(store, manifest)
        version.manifest = manifest.to_json()
        macro = (manifest.test_metrics or {}).get("macro") or {}
        version.test_auroc = macro.get("auroc")
        version.status = "ready"
    return "ready"


def _evaluate(
    settings: Settings,
    store: ObjectStore,
    manifest: ModelManifest,
    parts: dict[str, list[tuple[str, str, dict[str, Any]]]],
    seed: int,
) -> dict[str, Any]:
    from platform_core.inference import serving
    from platform_core.inference.batch import labelled
    from platform_core.training import evaluation

    labels = list(manifest.adapter.labels)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ids: dict[str, list[str]] = {}
    for part, rows in parts.items():
        known = [rows[j] for j in labelled(rows, labels)]
        ids[part] = [r[0] for r in known]
        preds = serving.predict_cached(settings, store, manifest, [k for _, k, _ in known])
        y = np.asarray([[r[2][n] for n in labels] for r in known], dtype=np.float32).reshape(-1, len(labels))
        p = np.asarray([[q["probabilities"][n] for n in labels] for q in preds], dtype=np.float64)
        arrays[part] = (y, p.reshape(-1, len(labels)))
    y_val, p_val = arrays["val"]
    if not len(y_val):
        raise ValueError("the split has no labelled validation images")
    y_test, p_test = arrays["test"]
    out: dict[str, Any] = {"thresholds_source": "validation", "n_val": len(y_val)}
    if len(y_test):
        ev = evaluation.evaluate(y_val, p_val, y_test, p_test, labels, seed=seed)
        out["thresholds"] = {n: float(t) for n, t in ev.thresholds.items()}
        # For champion/challenger comparisons (platform_core.evaluation.compare).
        predictions = evaluation.predictions_json(ids["test"], y_test, p_test, ev)
        store.put_bytes(f"{manifest.prefix}/{evaluation.PREDICTIONS_FILE}", predictions)
        report = ev.to_json()
        out["test_metrics"] = {k: report[k] for k in TEST_KEYS}
    else:
        from platform_core.training import metrics as M

        youden = [M.youden_threshold(y_val[:, j], p_val[:, j]) for j in range(len(labels))]
        out["thresholds"] = {n: float(t) for n, t in zip(labels, youden, strict=True)}
    return out

"""Champion and challenger: two versions of a registered model compared on the same test split (DeLong's
test on each label's AUROC, McNemar at each version's operating point: the one it was promoted with,
else Youden's), and the non-inferiority alias gate built on it. Reads the per-image test predictions
each job stored at its evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from platform_core.errors import Conflict
from platform_core.evaluation import paired
from platform_core.evaluation.schemas import ComparisonOut
from platform_core.registry import repository as registry
from platform_core.registry.models import ModelVersion, RegisteredModel
from platform_core.storage import ObjectStore
from platform_core.training.evaluation import PREDICTIONS_FILE

PREDICTIONS = PREDICTIONS_FILE


@dataclass
class StoredPredictions:
    split_id: str | None
    labels: list[str]
    image_ids: list[str]
    y: np.ndarray
    p: np.ndarray
    thresholds: dict[str, float]


def stored_predictions(session: Session, store: ObjectStore, version: ModelVersion) -> StoredPredictions:
    """The version's stored test predictions: its own (a version of another epoch than the job's best,
    evaluated by platform_core.registry.evaluate), else those of its job's best epoch, tested in training."""
    from platform_core.jobs import repository as jobs

    job = jobs.find_job(session, version.job_id) if version.job_id else None
    result = dict(job.result or {}) if job else {}
    key = (result.get("artifacts") or {}).get(PREDICTIONS)
    if store.exists(f"{version.prefix}/{PREDICTIONS}"):
        key = f"{version.prefix}/{PREDICTIONS}"
    elif result.get("best_epoch") != version.epoch:
        key = None
    if job is None or key is None:
        raise Conflict(
            f"version {version.number} has no stored test predictions (a job's best epoch has them, and a "
            "version of another epoch once evaluated, if trained or evaluated since they are stored)",
            param="version",
        )
    doc = json.loads(store.get_bytes(key))
    thresholds = {k: float(v) for k, v in doc["thresholds"].items()}
    # The operating point promotion chose (on the same uncalibrated scale as the stored probabilities).
    thresholds.update((version.model_manifest.operating_point or {}).get("thresholds") or {})
    return StoredPredictions(
        job.split_id,
        list(doc["labels"]),
        list(doc["image_ids"]),
        np.asarray(doc["y"], dtype=np.int64),
        np.asarray(doc["p"], dtype=np.float64),
        thresholds,
    )


def paired_cases(a: StoredPredictions, b: StoredPredictions) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(shared labels, row indices into a, row indices into b) for the test images both scored."""
    if a.split_id != b.split_id:
        raise Conflict(
            "the versions were tested on different splits; a paired comparison needs one", param="b"
        )
    labels = [n for n in a.labels if n in b.labels]
    where_b = {image_id: i for i, image_id in enumerate(b.image_ids)}
    rows = [(i, where_b[image_id]) for i, image_id in enumerate(a.image_ids) if image_id in where_b]
    if not labels or len(rows) < 2:
        raise Conflict("the versions share no labels or test images to compare on", param="b")
    ia, ib = (np.asarray(r, dtype=np.int64) for r in zip(*rows, strict=True))
    return labels, ia, ib


def compare_label(
    a: StoredPredictions, b: StoredPredictions, ia: np.ndarray, ib: np.ndarray, label: str
) -> dict[str, Any]:
    ja, jb = a.labels.index(label), b.labels.index(label)
    y, pa, pb = a.y[ia, ja], a.p[ia, ja], b.p[ib, jb]
    ta, tb = a.thresholds.get(label, 0.5), b.thresholds.get(label, 0.5)
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "n_positive": int(y.sum()),
        "delong": paired.delong_test(y, pa, pb).to_json() if both else None,
        "thresholds": {"a": ta, "b": tb},
        "mcnemar": paired.mcnemar(y, pa >= ta, pb >= tb),
    }


def compare_versions(
    session: Session, store: ObjectStore, a: ModelVersion, b: ModelVersion
) -> dict[str, Any]:
    pa, pb = stored_predictions(session, store, a), stored_predictions(session, store, b)
    labels, ia, ib = paired_cases(pa, pb)
    return {
        "a": {"version": a.number, "id": a.id, "test_auroc": a.test_auroc},
        "b": {"version": b.number, "id": b.id, "test_auroc": b.test_auroc},
        "split_id": pa.split_id,
        "n_test": len(ia),
        "difference": "b - a",
        "per_label": {n: compare_label(pa, pb, ia, ib, n) for n in labels},
    }


def compare(
    session: Session, store: ObjectStore, project_id: str, name: str, a: int, b: int
) -> ComparisonOut:
    """GET /v1/models/{name}/compare?a=&b=: version b against version a on their shared test split."""
    model = registry.get_model(session, project_id, name)
    out = compare_versions(
        session,
        store,
        registry.version_by_number(session, model, a),
        registry.version_by_number(session, model, b),
    )
    return ComparisonOut.model_validate({"model": model.name, **out})


def noninferiority_gate(
    session: Session, store: ObjectStore, model: RegisteredModel, alias: str, margin: float
) -> Any:
    """A gate for registry.set_alias: refuses a challenger whose AUROC is not shown within `margin` of
    the holder's (the lower DeLong 95% CI bound of challenger - holder below -margin, on any label)."""

    def gate(holder: ModelVersion, challenger: ModelVersion) -> None:
        report = compare_versions(session, store, holder, challenger)
        for label, r in report["per_label"].items():
            d = r["delong"]
            if d is not None and d["ci95"][0] < -margin:
                raise Conflict(
                    f"version {challenger.number} is not shown non-inferior to {model.name}:{holder.number}, "
                    f"which holds '{alias}', on '{label}': AUROC {d['auroc_b']:.3f} vs {d['auroc_a']:.3f}, "
                    f"difference {d['difference']:+.3f} (DeLong 95% CI {d['ci95'][0]:+.3f} to "
                    f"{d['ci95'][1]:+.3f}, p={d['p_value']:.3g}, n={r['n']}); the margin is {margin:.3f}. "
                    "Send force: true to move it anyway",
                    param="force",
                )

    return gate

"""The job report's figures as JSON (`report.json`, beside the job's other artifacts): the test table in
the white paper's columns, ROC and precision-recall points, reliability-diagram bins, operating points and
the subgroup table; enough to redraw every figure and regenerate the README table without the model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve
from sqlalchemy.orm import Session

from platform_core.errors import NotFound
from platform_core.storage import ObjectStore

REPORT_FILE = "report.json"
FORMAT = "medtune-report/1"
TABLE_METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1")


def curves(y: np.ndarray, p: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per label with both classes on test: ROC (fpr, tpr, thresholds) and PR (recall, precision)."""
    y, p = y.reshape(len(y), -1).astype(int), p.reshape(len(p), -1).astype(np.float64)
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(labels):
        if len(np.unique(y[:, j])) < 2:
            continue
        fpr, tpr, thr = roc_curve(y[:, j], p[:, j])
        precision, recall, _ = precision_recall_curve(y[:, j], p[:, j])
        out[name] = {
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.minimum(thr, 1.0).tolist()},
            "pr": {"recall": recall.tolist(), "precision": precision.tolist()},
        }
    return out


def table(result: dict[str, Any], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per label (and "macro" first): the white paper's columns with their 95% CIs."""
    ci = result.get("ci95") or {}
    rows = [("macro", result["macro"], ci.get("macro") or {})]
    rows += [(n, result["per_label"][n], (ci.get("per_label") or {}).get(n) or {}) for n in labels]
    return [
        {
            "label": label,
            **{m: values.get(m) for m in TABLE_METRICS},
            "ci95": {m: cis.get(m) for m in TABLE_METRICS},
        }
        for label, values, cis in rows
    ]


def subgroup_rows(subgroups: dict[str, Any]) -> list[dict[str, Any]]:
    """The subgroup table flat: attribute, value, n, macro AUROC with its CI, the labels it is below on."""
    return [
        {
            "attribute": attribute,
            "value": g["value"],
            "n": g["n"],
            "n_positive": g["n_positive"],
            "auroc": g["macro"].get("auroc"),
            "auroc_ci95": g["ci95"]["macro"].get("auroc"),
            "below_overall": g["below_overall"],
        }
        for attribute, groups in (subgroups.get("attributes") or {}).items()
        for g in groups
    ]


def build(result: dict[str, Any], y: np.ndarray, p: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
    """`result`: the job's evaluation (training.evaluation.Evaluation.to_json()); `y`, `p`: test labels
    and probabilities, for the curves."""
    labels = list(result["labels"])
    calibration = result.get("calibration") or {}
    per_label_cal = calibration.get("per_label") or {}
    subgroups = result.get("subgroups") or {}
    return {
        "format": FORMAT,
        **extra,
        "labels": labels,
        "n_test": result["n_test"],
        "thresholds": result["thresholds"],
        "table": table(result, labels),
        "curves": curves(y, p, labels),
        "reliability": {n: c.get("reliability", []) for n, c in per_label_cal.items()},
        "calibration": {
            n: {k: v for k, v in c.items() if k != "reliability"} for n, c in per_label_cal.items()
        },
        "operating_points": (result.get("operating_points") or {}).get("per_label") or {},
        "subgroups": subgroup_rows(subgroups),
        "flagged_subgroups": subgroups.get("flagged") or [],
    }


def report_json(result: dict[str, Any], y: np.ndarray, p: np.ndarray, extra: dict[str, Any]) -> bytes:
    return json.dumps(build(result, y, p, extra), indent=1, sort_keys=True).encode()


def read(session: Session, store: ObjectStore, project_id: str, job_id: str) -> dict[str, Any]:
    """A job's stored report; 404 until the job succeeded (or if it finished before reports existed)."""
    from platform_core.jobs import repository as jobs

    job = jobs.get_job(session, job_id, project_id)
    key = ((job.result or {}).get("artifacts") or {}).get(REPORT_FILE)
    if key is None:
        raise NotFound(
            f"job {job_id} has no report: it is written when a job succeeds (status: {job.status})",
            param="job_id",
        )
    doc: dict[str, Any] = json.loads(store.get_bytes(key))
    return doc

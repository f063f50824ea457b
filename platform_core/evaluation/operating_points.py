"""Operating points: thresholds chosen on validation (Youden's J, a target sensitivity, a target
specificity) and the test sensitivity and specificity at each, with percentile bootstrap CIs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from platform_core.training import metrics as M

TARGETS = (0.90, 0.95)


def threshold_for_sensitivity(y_true: np.ndarray, y_prob: np.ndarray, target: float) -> float | None:
    """The highest threshold whose sensitivity (p >= threshold) reaches `target`; None if undefined."""
    if len(np.unique(y_true.astype(int))) < 2:
        return None
    _, tpr, thr = roc_curve(y_true.astype(int), y_prob, drop_intermediate=False)
    i = int(np.argmax(tpr >= target))
    return float(min(thr[i], 1.0))


def threshold_for_specificity(y_true: np.ndarray, y_prob: np.ndarray, target: float) -> float | None:
    """The lowest threshold whose specificity reaches `target`; None if undefined."""
    if len(np.unique(y_true.astype(int))) < 2:
        return None
    fpr, _, thr = roc_curve(y_true.astype(int), y_prob, drop_intermediate=False)
    i = int(np.flatnonzero(fpr <= 1 - target)[-1])
    return float(min(thr[i], 1.0))


def choose(
    y_val: np.ndarray, p_val: np.ndarray, targets: Sequence[float] = TARGETS
) -> dict[str, float | None]:
    """{"youden": t, "sensitivity_0.90": t, "specificity_0.90": t, ...} for one label on validation."""
    out: dict[str, float | None] = {"youden": M.youden_threshold(y_val, p_val)}
    for target in targets:
        out[f"sensitivity_{target:.2f}"] = threshold_for_sensitivity(y_val, p_val, target)
        out[f"specificity_{target:.2f}"] = threshold_for_specificity(y_val, p_val, target)
    return out


def sens_spec_ci(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    thresholds: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, list[float] | None]]:
    """Per threshold, percentile CIs of sensitivity and specificity over the same resampled test sets."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    values = np.full((len(thresholds), 2, n_resamples), np.nan)
    chunk = max(1, min(n_resamples, 2_000_000 // max(n, 1)))
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, (min(chunk, n_resamples - start), n))
        yt, yp = y_true[idx].astype(int), y_prob[idx]
        for k, t in enumerate(thresholds):
            tp, fp, fn, tn = M.resampled_counts(yt, yp, t)
            values[k, 0, start : start + len(idx)] = M.ratio(tp, tp + fn)
            values[k, 1, start : start + len(idx)] = M.ratio(tn, tn + fp)
    return [{"sensitivity": _interval(v[0], alpha), "specificity": _interval(v[1], alpha)} for v in values]


def _defined(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def _interval(arr: np.ndarray, alpha: float) -> list[float] | None:
    arr = arr[~np.isnan(arr)]
    if len(arr) < 10:
        return None
    return [float(np.quantile(arr, alpha / 2)), float(np.quantile(arr, 1 - alpha / 2))]


def label_points(
    y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray, n_resamples: int, seed: int
) -> list[dict[str, Any]]:
    chosen = {k: t for k, t in choose(y_val, p_val).items() if t is not None}
    cis = sens_spec_ci(y_test, p_test, list(chosen.values()), n_resamples, seed)
    out = []
    for (name, t), ci in zip(chosen.items(), cis, strict=True):
        method, _, target = name.partition("_")
        val = M.label_metrics(y_val, p_val, t)
        test = M.label_metrics(y_test, p_test, t)
        out.append({
            "name": name,
            "method": method,
            "target": float(target) if target else None,
            "threshold": t,
            "validation": {m: _defined(val[m]) for m in ("sensitivity", "specificity")},
            "test": {m: _defined(test[m]) for m in ("sensitivity", "specificity")},
            "test_ci95": ci,
        })  # fmt: skip
    return out


def operating_points(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    label_names: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """{"targets": [...], "per_label": {label: [{name, method, target, threshold, validation, test,
    test_ci95}]}}; a target the validation split cannot define (one class only) is left out."""
    return {
        "targets": list(TARGETS),
        "chosen_on": "validation",
        "per_label": {
            name: label_points(y_val[:, j], p_val[:, j], y_test[:, j], p_test[:, j], n_resamples, seed)
            for j, name in enumerate(label_names)
        },
    }

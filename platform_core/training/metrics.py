"""Classification metrics per label and macro (scikit-learn), bootstrap CIs and the Youden threshold."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1", "accuracy")


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def label_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """One label's metrics; AUROC/AUPRC are NaN when the label has a single class in y_true."""
    y_true = y_true.astype(int)
    y_pred = (y_prob >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both = len(np.unique(y_true)) == 2
    return {
        "auroc": float(roc_auc_score(y_true, y_prob)) if both else math.nan,
        "auprc": float(average_precision_score(y_true, y_prob)) if both else math.nan,
        "sensitivity": float(tp / (tp + fn)) if tp + fn else math.nan,
        "specificity": float(tn / (tn + fp)) if tn + fp else math.nan,
        "f1": float(f1_score(y_true, y_pred, labels=[0, 1], zero_division=0.0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def compute(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    label_names: Sequence[str],
    thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """{"macro": {metric: value}, "per_label": {label: {metric: value}}}; macro ignores undefined labels."""
    y_true = np.asarray(y_true).reshape(len(y_true), -1)
    y_prob = np.asarray(y_prob, dtype=np.float64).reshape(len(y_prob), -1)
    thresholds = list(thresholds) if thresholds is not None else [0.5] * y_true.shape[1]
    per = {
        name: label_metrics(y_true[:, j], y_prob[:, j], thresholds[j]) for j, name in enumerate(label_names)
    }
    macro = {m: _nanmean([per[n][m] for n in label_names]) for m in METRICS}
    return {
        "macro": {m: _nan_to_none(v) for m, v in macro.items()},
        "per_label": {n: {m: _nan_to_none(v) for m, v in vals.items()} for n, vals in per.items()},
    }


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def flat(result: dict[str, Any], prefix: str) -> dict[str, float]:
    """{"val_auroc": .., "val_auroc_effusion": ..} for MLflow; undefined values are left out."""
    out: dict[str, float] = {}
    for m, v in result["macro"].items():
        if v is not None:
            out[f"{prefix}_{m}"] = v
    if len(result["per_label"]) > 1:
        for label, vals in result["per_label"].items():
            for m, v in vals.items():
                if v is not None:
                    out[f"{prefix}_{m}_{safe_name(label)}"] = v
    return out


def safe_name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def youden_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 on one label (0.5 when undefined)."""
    if len(np.unique(y_true.astype(int))) < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y_true.astype(int), y_prob)
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thr[best], 0.0), 1.0))


def bootstrap_ci(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    label_names: Sequence[str],
    thresholds: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    chunk: int = 250,
) -> dict[str, Any]:
    """Percentile 95% CIs over resampled test sets: {"macro": {metric: [lo, hi]}, "per_label": {...}}.

    Every metric is computed for all resamples at once: the thresholded ones from the confusion
    counts, AUROC and AUPRC by the rank formulas scikit-learn's functions compute (checked against
    them in tests/unit/test_metrics_resampled.py). One scikit-learn call per resample cost about
    2 s per label for 1,000 resamples.
    """
    y_true = np.asarray(y_true).reshape(len(y_true), -1).astype(int)
    y_prob = np.asarray(y_prob, dtype=np.float64).reshape(len(y_prob), -1)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    values = {name: {m: np.full(n_resamples, np.nan) for m in METRICS} for name in label_names}
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, (min(chunk, n_resamples - start), n))
        rows = slice(start, start + len(idx))
        for j, name in enumerate(label_names):
            out = values[name]
            yt, yp = y_true[idx, j], y_prob[idx, j]
            tp, fp, fn, tn = resampled_counts(yt, yp, thresholds[j])
            out["sensitivity"][rows] = ratio(tp, tp + fn)
            out["specificity"][rows] = ratio(tn, tn + fp)
            f1 = ratio(2 * tp, 2 * tp + fp + fn)
            out["f1"][rows] = np.where(np.isnan(f1), 0.0, f1)  # zero_division=0.0, as label_metrics
            out["accuracy"][rows] = (tp + tn) / n
            both = (tp + fn > 0) & (tn + fp > 0)
            out["auroc"][rows] = np.where(both, resampled_auroc(yt, yp), np.nan)
            out["auprc"][rows] = np.where(both, resampled_average_precision(yt, yp), np.nan)
    with warnings.catch_warnings():  # a resample where every label is undefined: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = {m: np.nanmean(np.stack([values[name][m] for name in label_names]), axis=0) for m in METRICS}

    def interval(arr: np.ndarray) -> list[float] | None:
        arr = arr[~np.isnan(arr)]
        if len(arr) < max(10, n_resamples // 10):
            return None
        return [float(np.quantile(arr, alpha / 2)), float(np.quantile(arr, 1 - alpha / 2))]

    return {
        "macro": {m: interval(macro[m]) for m in METRICS},
        "per_label": {name: {m: interval(values[name][m]) for m in METRICS} for name in label_names},
        "n_resamples": n_resamples,
        "seed": seed,
    }


def resampled_auroc(yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """roc_auc_score of every row at once: the Mann-Whitney U with average ranks for ties, which is
    the area scikit-learn computes. NaN for a row with one class."""
    ranks = rankdata(yp, axis=1)
    n1 = yt.sum(axis=1)
    n0 = yt.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(((ranks * yt).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0), dtype=np.float64)


def resampled_average_precision(yt: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """average_precision_score of every row at once: the sum over positives of the precision at their
    tie group's threshold, over the positive count. NaN for a row without positives."""
    order = np.argsort(-yp, axis=1, kind="mergesort")
    ys = np.take_along_axis(yt, order, axis=1)
    ps = np.take_along_axis(yp, order, axis=1)
    precision = np.cumsum(ys, axis=1) / np.arange(1, yt.shape[1] + 1)
    last_of_group = np.ones_like(ps, dtype=bool)
    last_of_group[:, :-1] = ps[:, 1:] != ps[:, :-1]
    # every position takes the precision at its tie group's last position (a backward running minimum)
    at = np.where(last_of_group, np.arange(ps.shape[1]), ps.shape[1] - 1)
    at = np.minimum.accumulate(at[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((ys * np.take_along_axis(precision, at, axis=1)).sum(axis=1) / ys.sum(axis=1))


def resampled_counts(
    yt: np.ndarray, yp: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn, tn) per row of resampled labels `yt` and probabilities `yp` (resamples x cases)."""
    pred = yp >= threshold
    tp = (pred & (yt == 1)).sum(axis=1)
    fp = (pred & (yt == 0)).sum(axis=1)
    fn = (~pred & (yt == 1)).sum(axis=1)
    return tp, fp, fn, yt.shape[1] - tp - fp - fn


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, NaN where den is 0."""
    out: np.ndarray = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
    return out


def confusion(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, int]:
    tn, fp, fn, tp = confusion_matrix(
        y_true.astype(int), (y_prob >= threshold).astype(int), labels=[0, 1]
    ).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


def mean_sd_ci(values: Sequence[float | None]) -> dict[str, Any]:
    """Across seeds: mean, sample standard deviation and a t-based 95% CI of the mean."""
    from scipy import stats

    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(arr) == 0:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci95": None}
    sd = float(arr.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(arr) - 1) * sd / math.sqrt(len(arr)))
    return {"n": len(arr), "mean": mean, "sd": sd, "ci95": [mean - half, mean + half]}

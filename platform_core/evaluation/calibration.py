"""Calibration on test: expected calibration error (equal-width bins), Brier score, reliability-diagram
data, and temperature scaling fitted on validation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

N_BINS = 10
EPS = 1e-7


def bin_ids(y_prob: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The equal-width bin of each probability, as scikit-learn's calibration_curve bins it."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], y_prob)


def ece(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> float:
    """Sum over bins of |mean probability - observed fraction| weighted by the bin's share of cases."""
    y_true, y_prob = np.asarray(y_true, dtype=np.float64), np.asarray(y_prob, dtype=np.float64)
    ids = bin_ids(y_prob, n_bins)
    total = 0.0
    for b in np.unique(ids):
        inside = ids == b
        total += inside.mean() * abs(y_prob[inside].mean() - y_true[inside].mean())
    return float(total)


def reliability(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """The non-empty bins: edges, count, mean predicted probability and observed positive fraction."""
    observed, predicted = calibration_curve(y_true, y_prob, n_bins=n_bins, strategy="uniform")
    ids = bin_ids(np.asarray(y_prob, dtype=np.float64), n_bins)
    filled = np.unique(ids)
    return [
        {
            "bin": [float(b / n_bins), float((b + 1) / n_bins)],
            "count": int((ids == b).sum()),
            "mean_predicted": float(p),
            "observed": float(o),
        }
        for b, p, o in zip(filled, predicted, observed, strict=True)
    ]


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.asarray(np.log(p / (1 - p)))


def scale(p: np.ndarray, temperature: float) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logit(p) / temperature)))


def fit_temperature(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The temperature T minimising the binary NLL of sigmoid(logit(p) / T), searched over log T."""
    z, y = logit(y_prob), np.asarray(y_true, dtype=np.float64)

    def nll(log_t: float) -> float:
        q = np.clip(1.0 / (1.0 + np.exp(-z / math.exp(log_t))), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    found = optimize.minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(math.exp(found.x))


def label_calibration(y_test: np.ndarray, p_test: np.ndarray, temperature: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ece": ece(y_test, p_test),
        "brier": float(brier_score_loss(y_test.astype(int), p_test)),
        "reliability": reliability(y_test.astype(int), p_test),
    }
    if temperature is not None:
        scaled = scale(p_test, temperature)
        out["temperature"] = temperature
        out["ece_scaled"] = ece(y_test, scaled)
        out["brier_scaled"] = float(brier_score_loss(y_test.astype(int), scaled))
    return out


def calibrate(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    label_names: Sequence[str],
    temperature_scaling: bool = True,
) -> dict[str, Any]:
    """{"n_bins", "per_label": {label: {ece, brier, reliability, [temperature, ece_scaled, brier_scaled]}},
    "macro": {ece, brier}}; a temperature is fitted on validation only where it has both classes."""
    per: dict[str, Any] = {}
    for j, name in enumerate(label_names):
        fit = temperature_scaling and len(np.unique(y_val[:, j].astype(int))) == 2
        temperature = fit_temperature(y_val[:, j], p_val[:, j]) if fit else None
        per[name] = label_calibration(y_test[:, j], p_test[:, j], temperature)
    macro = {k: float(np.mean([per[n][k] for n in label_names])) for k in ("ece", "brier")}
    return {"n_bins": N_BINS, "bins": "equal-width", "per_label": per, "macro": macro}

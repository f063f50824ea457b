"""Paired tests of two classifiers on the same cases: DeLong's test for two correlated AUROCs (the fast
algorithm of Sun & Xu 2014) and McNemar's exact test at an operating point."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank (Sun & Xu's Algorithm 1)."""
    return np.asarray(stats.rankdata(x, method="average"), dtype=np.float64)


def structural_components(
    y_true: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AUROCs (k,), V10 (k, m), V01 (k, n)) for k score rows over m positives and n negatives.

    V10[i] is the fraction of negatives a positive i outranks (ties count half), V01[j] the fraction of
    positives that outrank negative j: DeLong's structural components, here computed from midranks.
    """
    y = np.asarray(y_true).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs positives and negatives")
    tx = np.stack([midranks(r) for r in pos])
    ty = np.stack([midranks(r) for r in neg])
    tz = np.stack([midranks(r) for r in scores[:, np.r_[np.flatnonzero(y), np.flatnonzero(~y)]]])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROCs (k,), their covariance matrix (k, k)): S10/m + S01/n."""
    aucs, v10, v01 = structural_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


@dataclass
class DelongResult:
    auc_a: float
    auc_b: float
    difference: float  # auc_b - auc_a
    se: float
    ci95: tuple[float, float]
    z: float | None
    p_value: float

    def to_json(self) -> dict[str, Any]:
        return {
            "auroc_a": self.auc_a,
            "auroc_b": self.auc_b,
            "difference": self.difference,
            "se": self.se,
            "ci95": list(self.ci95),
            "z": self.z,
            "p_value": self.p_value,
        }


def delong_test(y_true: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, alpha: float = 0.05) -> DelongResult:
    """Two-sided DeLong test of AUROC(b) - AUROC(a) on the same cases, with its normal CI."""
    aucs, cov = delong_covariance(y_true, np.vstack([p_a, p_b]))
    diff = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    if se == 0.0:  # identical rankings (or a perfect pair): no evidence of a difference either way
        z, p = None, 1.0 if diff == 0 else 0.0
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    return DelongResult(float(aucs[0]), float(aucs[1]), diff, se, (diff - half, diff + half), z, p)


def mcnemar(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on the discordant pairs of two classifiers' correct/incorrect calls."""
    y = np.asarray(y_true).astype(bool)
    right_a = np.asarray(pred_a).astype(bool) == y
    right_b = np.asarray(pred_b).astype(bool) == y
    only_a = int((right_a & ~right_b).sum())
    only_b = int((~right_a & right_b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(stats.binomtest(min(only_a, only_b), discordant, 0.5).pvalue)
    return {"a_right_b_wrong": only_a, "a_wrong_b_right": only_b, "p_value": p, "method": "exact binomial"}

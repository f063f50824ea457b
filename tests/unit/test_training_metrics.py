"""Metrics agree with scikit-learn, seeded bootstrap CIs bracket the estimate, Youden picks the cut."""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import roc_auc_score

from platform_core.training import evaluation
from platform_core.training import metrics as M


def _data(n: int = 200, labels: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (n, labels)).astype(np.float32)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, (n, labels)), 0, 1)
    return y, p


def test_per_label_and_macro() -> None:
    y, p = _data()
    out = M.compute(y, p, ["a", "b"])
    assert out["per_label"]["a"]["auroc"] == roc_auc_score(y[:, 0], p[:, 0])
    assert abs(out["macro"]["auroc"] - np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(2)])) < 1e-12
    assert set(out["macro"]) == set(M.METRICS)
    flat = M.flat(out, "val")
    assert "val_auroc" in flat and "val_auroc_a" in flat


def test_sensitivity_specificity_by_hand() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.2, 0.1, 0.7, 0.6])
    out = M.label_metrics(y, p, 0.5)
    assert out["sensitivity"] == 2 / 3 and out["specificity"] == 1 / 2 and out["accuracy"] == 3 / 5


def test_single_class_label_is_undefined_not_an_error() -> None:
    y = np.zeros((10, 1))
    out = M.compute(y, np.linspace(0, 1, 10), ["x"])
    assert out["macro"]["auroc"] is None and out["macro"]["specificity"] is not None


def test_youden_threshold_separates_perfectly() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    t = M.youden_threshold(y, p)
    assert 0.3 < t <= 0.6
    assert M.label_metrics(y, p, t)["accuracy"] == 1.0


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    y, p = _data(120, 1)
    a = M.bootstrap_ci(y, p, ["x"], [0.5], n_resamples=1000, seed=7)
    b = M.bootstrap_ci(y, p, ["x"], [0.5], n_resamples=1000, seed=7)
    assert a == b and a["n_resamples"] == 1000
    lo, hi = a["macro"]["auroc"]
    point = roc_auc_score(y[:, 0], p[:, 0])
    assert lo < point < hi and hi - lo < 0.3


def test_mean_sd_ci_across_seeds() -> None:
    out = M.mean_sd_ci([0.8, 0.82, 0.78])
    assert abs(out["mean"] - 0.8) < 1e-9 and abs(out["sd"] - 0.02) < 1e-9
    assert out["ci95"][0] < 0.8 < out["ci95"][1]
    assert M.mean_sd_ci([0.5])["sd"] is None


def test_evaluation_artifacts() -> None:
    y, p = _data(80, 2, seed=1)
    ev = evaluation.evaluate(y, p, y, p, ["a", "b"], seed=3, n_resamples=200)
    doc = json.loads(evaluation.metrics_json(ev, {"job_id": "ftjob_x"}))
    assert doc["job_id"] == "ftjob_x" and doc["threshold_method"] == "youden_j_on_validation"
    assert sum(doc["confusion"]["a"].values()) == 80
    for kind in ("roc", "pr"):
        assert evaluation.curves_png(y, p, ["a", "b"], kind).startswith(b"\x89PNG")
    card = evaluation.model_card({"base_model": "test_vit", "split_sha256": "abc"}, ev)
    assert "sha256 abc" in card and "| macro | auroc |" in card

"""The bootstrap's all-resamples-at-once AUROC and average precision equal scikit-learn's functions,
ties and one-class rows included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from platform_core.training.metrics import bootstrap_ci, resampled_auroc, resampled_average_precision


@pytest.mark.parametrize("n", [7, 40, 300])
def test_rank_formulas_equal_scikit_learn_per_row(n: int) -> None:
    rng = np.random.default_rng(n)
    y0 = (rng.random(n) < 0.3).astype(int)
    p0 = np.round(rng.random(n), 1)  # coarse: many ties
    idx = rng.integers(0, n, (200, n))
    yt, yp = y0[idx], p0[idx]
    auroc, ap = resampled_auroc(yt, yp), resampled_average_precision(yt, yp)
    checked = 0
    for r in range(len(idx)):
        if 0 < yt[r].sum() < n:
            assert auroc[r] == pytest.approx(roc_auc_score(yt[r], yp[r]), abs=1e-12)
            assert ap[r] == pytest.approx(average_precision_score(yt[r], yp[r]), abs=1e-12)
            checked += 1
        if yt[r].sum() == 0:
            assert np.isnan(auroc[r]) and np.isnan(ap[r])
    assert checked > 150


def test_bootstrap_interval_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((120, 2)) < 0.4).astype(int)
    p = np.clip(y * 0.3 + rng.random((120, 2)) * 0.7, 0, 1)
    ci = bootstrap_ci(y, p, ["a", "b"], [0.5, 0.5], n_resamples=400)
    for j, name in enumerate(["a", "b"]):
        lo, hi = ci["per_label"][name]["auroc"]
        assert lo < roc_auc_score(y[:, j], p[:, j]) < hi
        lo, hi = ci["per_label"][name]["auprc"]
        assert lo < average_precision_score(y[:, j], p[:, j]) < hi

"""Clinical evaluation metrics checked against references on fixed data: DeLong against a published
example and an independent O(m·n) implementation of DeLong 1988, McNemar against hand counts, ECE and
Brier against hand-computed values and scikit-learn, operating points and subgroups on known data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from platform_core.evaluation import calibration, operating_points, paired, subgroups


def slow_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong, DeLong & Clarke-Pearson 1988 as written: psi kernels, V10/V01, S10/S01; (diff, var, p)."""
    pos, neg = y == 1, y == 0
    comps = []
    for s in (a, b):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = pos.sum(), neg.sum()
    v10 = np.stack([c[1] for c in comps])
    v01 = np.stack([c[2] for c in comps])
    s10 = (v10 - v10.mean(axis=1, keepdims=True)) @ (v10 - v10.mean(axis=1, keepdims=True)).T / (m - 1)
    s01 = (v01 - v01.mean(axis=1, keepdims=True)) @ (v01 - v01.mean(axis=1, keepdims=True)).T / (n - 1)
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = comps[1][0] - comps[0][0]
    return float(diff), float(var), float(2 * stats.norm.sf(abs(diff) / np.sqrt(var)))


def test_delong_on_hanley_mcneil_ct_ratings() -> None:
    # Hanley & McNeil, Radiology 1982, Table 1: 109 CT images rated 1-5; published area 0.893.
    neg = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2]).astype(float)
    pos = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33]).astype(float)
    y = np.r_[np.zeros(58), np.ones(51)]
    aucs, cov = paired.delong_covariance(y, np.r_[neg, pos][None])
    assert aucs[0] == pytest.approx(0.893, abs=5e-4)
    # Hanley & McNeil's exponential approximation gives SE 0.032; DeLong's empirical SE is close to it.
    assert np.sqrt(cov[0, 0]) == pytest.approx(0.032, abs=0.0015)


def test_fast_delong_matches_the_1988_definition_with_ties() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    a = np.round(y * 0.8 + rng.normal(0, 1, 300), 1)  # rounded: ties within and across classes
    b = np.round(y * 1.2 + rng.normal(0, 1, 300) + 0.3 * a, 1)
    got = paired.delong_test(y, a, b)
    diff, var, p = slow_delong(y, a, b)
    assert got.auc_a == pytest.approx(roc_auc_score(y, a))
    assert got.auc_b == pytest.approx(roc_auc_score(y, b))
    assert got.difference == pytest.approx(diff)
    assert got.se**2 == pytest.approx(var)
    assert got.p_value == pytest.approx(p)
    assert got.ci95[0] == pytest.approx(diff - 1.959964 * np.sqrt(var), abs=1e-6)
    assert got.ci95[0] < got.difference < got.ci95[1]


def test_delong_of_identical_scores_is_no_difference() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    got = paired.delong_test(y, p, p)
    assert (got.difference, got.se, got.p_value, got.ci95) == (0.0, 0.0, 1.0, (0.0, 0.0))


def test_mcnemar_exact_on_hand_counts() -> None:
    y = np.ones(12, dtype=int)
    a = np.array([1] * 10 + [0] * 2)  # a right on 10
    b = np.array([1] * 3 + [0] * 9)  # b right on 3; discordant: a only 7, b only 0... plus 2 both wrong
    got = paired.mcnemar(y, a, b)
    assert (got["a_right_b_wrong"], got["a_wrong_b_right"]) == (7, 0)
    assert got["p_value"] == pytest.approx(2 * 0.5**7)  # exact two-sided binomial, 7 of 7


def test_ece_and_brier_by_hand() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.72, 0.78, 0.95])
    # bins: [0,.1): {0.05 / y 0}, [.1,.2): {0.15 / 1}, [.7,.8): {0.72, 0.78 / 1, 0}, [.9,1]: {0.95 / 1}
    by_hand = (1 * 0.05 + 1 * 0.85 + 2 * abs(0.75 - 0.5) + 1 * 0.05) / 5
    assert calibration.ece(y, p) == pytest.approx(by_hand)  # 0.29
    brier = (0.05**2 + 0.85**2 + 0.28**2 + 0.78**2 + 0.05**2) / 5
    assert brier_score_loss(y, p) == pytest.approx(brier)
    report = calibration.label_calibration(y.astype(float), p, None)
    assert report["brier"] == pytest.approx(brier)
    assert [(b["bin"], b["count"], b["observed"]) for b in report["reliability"]] == [
        ([0.0, 0.1], 1, 0.0), ([0.1, 0.2], 1, 1.0), ([0.7, 0.8], 2, 0.5), ([0.9, 1.0], 1, 1.0),
    ]  # fmt: skip
    assert report["reliability"][2]["mean_predicted"] == pytest.approx(0.75)


def test_temperature_scaling_recovers_a_known_temperature_and_lowers_ece() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(float)
    overconfident = 1 / (1 + np.exp(-2.5 * z))  # the true probability at temperature 2.5
    t = calibration.fit_temperature(y[:10000], overconfident[:10000])
    assert t == pytest.approx(2.5, rel=0.05)
    out = calibration.calibrate(
        y[:10000, None], overconfident[:10000, None], y[10000:, None], overconfident[10000:, None], ["x"]
    )["per_label"]["x"]
    assert out["ece_scaled"] < out["ece"] / 3


def test_operating_points_hit_their_targets_on_validation() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    p = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1.2, 2000))))
    t90 = operating_points.threshold_for_sensitivity(y, p, 0.90)
    assert t90 is not None and ((p >= t90)[y == 1]).mean() >= 0.90
    assert ((p >= t90 + 1e-9)[y == 1]).mean() < 0.90 or t90 == 1.0  # the highest such threshold
    s95 = operating_points.threshold_for_specificity(y, p, 0.95)
    assert s95 is not None and ((p < s95)[y == 0]).mean() >= 0.95
    report = operating_points.operating_points(y[:1000, None], p[:1000, None], y[1000:, None], p[1000:, None],
                                               ["x"], n_resamples=300)  # fmt: skip
    points = {pt["name"]: pt for pt in report["per_label"]["x"]}
    assert set(points) == {"youden", "sensitivity_0.90", "specificity_0.90", "sensitivity_0.95",
                           "specificity_0.95"}  # fmt: skip
    for pt in points.values():
        lo, hi = pt["test_ci95"]["sensitivity"]
        assert lo <= pt["test"]["sensitivity"] <= hi
    assert (
        points["sensitivity_0.95"]["test"]["sensitivity"] > points["specificity_0.95"]["test"]["sensitivity"]
    )


def test_subgroups_flag_the_group_the_model_fails() -> None:
    rng = np.random.default_rng(2)
    n = 600
    y = rng.integers(0, 2, n).astype(float)
    good = 1 / (1 + np.exp(-(3 * (2 * y - 1) + rng.normal(0, 1, n))))
    sex = np.where(np.arange(n) % 3 == 0, "F", "M")
    p = np.where(sex == "F", rng.random(n), good)  # noise for F
    attrs = {"sex": list(sex), "view_position": ["PA"] * n, "age_band": [subgroups.age_band(40)] * n}
    from platform_core.training import metrics as M

    overall = M.compute(y[:, None], p[:, None], ["x"], [0.5])
    out = subgroups.subgroups(y[:, None], p[:, None], ["x"], [0.5], attrs, overall, resamples=200)
    assert list(out["attributes"]) == ["sex"]  # one known value: no subgroup table
    rows = {g["value"]: g for g in out["attributes"]["sex"]}
    assert rows["F"]["n"] == 200 and rows["M"]["n"] == 400
    assert rows["F"]["n_positive"]["x"] == int(y[sex == "F"].sum())
    assert out["flagged"] == [{"attribute": "sex", "value": "F", "labels": ["macro", "x"]}]
    assert rows["M"]["below_overall"] == []


def test_age_bands() -> None:
    assert [subgroups.age_band(a) for a in (None, 5, 18, 59, 60, 95)] == [
        "unknown", "0-17", "18-39", "40-59", "60-79", "80+",
    ]  # fmt: skip

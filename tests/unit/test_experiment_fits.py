"""The data-volume experiment's fits: the learning curve AUROC(n) = a - b n^-c recovers a known curve
from noisy points within its intervals, the size needed for a target reads off the curve (or says it is
not reachable), and the linear fit of epoch seconds recovers a known slope."""

from __future__ import annotations

import numpy as np
import pytest

from platform_core.experiments import fits

A, B, C = 0.9, 0.5, 0.4
SIZES = [100, 200, 400, 1000, 2000, 4000]
NOISE = 0.004


def _points(seeds: int = 5) -> tuple[list[float], list[float], list[float]]:
    rng = np.random.default_rng(13)
    xs, ys = [], []
    for n in SIZES:
        for _ in range(seeds):
            xs.append(float(n))
            ys.append(float(fits.curve(n, A, B, C) + rng.normal(0, NOISE)))
    return xs, ys, [NOISE] * len(xs)


def test_power_law_recovers_a_b_c_within_their_intervals() -> None:
    xs, ys, sigma = _points()
    fit = fits.power_law(xs, ys, sigma)
    assert fit is not None
    for name, truth in (("a", A), ("b", B), ("c", C)):
        lo, hi = fit[f"{name}_ci95"]
        assert lo <= truth <= hi, (name, fit[name], fit[f"{name}_ci95"])
        assert hi - lo < 1.5 * truth  # an interval that says something (b and c trade off)
    assert fit["rmse"] < 2 * NOISE


def test_power_law_without_sigma_estimates_it_from_the_residuals() -> None:
    xs, ys, _ = _points()
    fit = fits.power_law(xs, ys)
    assert fit is not None and fit["weighted"] is False
    assert fit["a_ci95"][0] <= A <= fit["a_ci95"][1]


def test_samples_needed_inverts_the_curve_with_an_interval() -> None:
    xs, ys, sigma = _points()
    fit = fits.power_law(xs, ys, sigma)
    target = 0.87
    truth = (B / (A - target)) ** (1 / C)  # about 4,900 samples
    out = fits.samples_needed(fit, target)
    assert out["reachable"] is True
    lo, hi = out["samples_ci95"]
    assert lo is not None and lo <= truth
    assert hi is None or truth <= hi
    assert out["samples"] == pytest.approx(truth, rel=0.35)


def test_a_target_above_the_plateau_is_not_reachable() -> None:
    xs, ys, sigma = _points()
    out = fits.samples_needed(fits.power_law(xs, ys, sigma), 0.97)
    assert out["reachable"] is False
    assert "not reachable" in out["reason"]


def test_too_few_sizes_give_no_curve_and_say_so() -> None:
    assert fits.power_law([100, 200, 100, 200], [0.7, 0.75, 0.71, 0.74]) is None
    assert fits.samples_needed(None, 0.85)["reachable"] is None


def test_linear_fit_recovers_the_slope_and_intercept() -> None:
    rng = np.random.default_rng(5)
    sizes = [100, 200, 400, 1000, 2000] * 3
    seconds = [26 + 0.18 * (n - 100) + rng.normal(0, 0.5) for n in sizes]
    fit = fits.linear(sizes, seconds)
    assert fit is not None
    assert fit["seconds_per_100"] == pytest.approx(18.0, rel=0.02)
    assert fit["at_100_s"] == pytest.approx(26.0, abs=1.0)
    lo, hi = fit["seconds_per_100_ci95"]
    assert lo < fit["seconds_per_100"] < hi
    assert abs(fit["seconds_per_100"] - 18.0) < 1.5 * (hi - lo)  # within three standard errors
    assert fits.linear([100, 100], [1.0, 2.0]) is None

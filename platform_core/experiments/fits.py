"""The fits of a data-volume experiment: epoch seconds against size (a straight line) and the learning
curve AUROC(n) = a - b * n^(-c) (an inverse power law), with their uncertainty, and the training-set
size a target AUROC needs on that curve.

The learning curve is fitted by weighted least squares (scipy.optimize.curve_fit, each point weighted
by its standard error when known; the covariance is then widened by the reduced chi-square when the
points scatter more than their errors say), bounded to 0 <= a <= 1, b >= 0, 0 < c <= 3. Its 95% intervals come
from the parameters' covariance (normal approximation); the size needed for a target is read off the
curve at the fitted parameters, and its interval from the same normal draws of (a, b, c) pushed
through the inverse (a parametric bootstrap), so it carries the correlation between the parameters.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054
DRAWS = 4000
BOUNDS = ([0.0, 0.0, 1e-3], [1.0, 100.0, 3.0])
NEVER = 1e300


def linear(sizes: Sequence[float], seconds: Sequence[float]) -> dict[str, Any] | None:
    """seconds = intercept + slope * size, by least squares; None with fewer than two distinct sizes."""
    from scipy import stats

    x, y = np.asarray(sizes, dtype=float), np.asarray(seconds, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    fit = stats.linregress(x, y)
    slope_se = float(fit.stderr) if len(x) > 2 else None
    return {
        "intercept_s": float(fit.intercept),
        "slope_s_per_sample": float(fit.slope),
        "seconds_per_100": float(fit.slope * 100),
        "seconds_per_100_ci95": (
            [float((fit.slope - Z95 * slope_se) * 100), float((fit.slope + Z95 * slope_se) * 100)]
            if slope_se is not None and math.isfinite(slope_se)
            else None
        ),
        "at_100_s": float(fit.intercept + fit.slope * 100),
        "r2": float(fit.rvalue**2) if len(x) > 2 else None,
        "n_points": len(x),
    }


def curve(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


def power_law(
    sizes: Sequence[float], aurocs: Sequence[float], sigma: Sequence[float] | None = None
) -> dict[str, Any] | None:
    """AUROC(n) = a - b * n^(-c): parameters, covariance and 95% intervals; None when it cannot be fitted
    (fewer than three distinct sizes, or the optimiser does not converge)."""
    from scipy.optimize import curve_fit

    x, y = np.asarray(sizes, dtype=float), np.asarray(aurocs, dtype=float)
    s = None if sigma is None else np.asarray(sigma, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if s is not None:
        keep &= np.isfinite(s) & (s > 0)
    x, y = x[keep], y[keep]
    s = s[keep] if s is not None else None
    if len(np.unique(x)) < 3:
        return None
    p0 = [min(1.0, float(y.max()) + 0.02), max(1e-3, float(y.max() - y.min()) * 2 + 0.05), 0.5]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = curve_fit(
                curve, x, y, p0=p0, sigma=s, absolute_sigma=s is not None, bounds=BOUNDS, maxfev=20000
            )
    except (RuntimeError, ValueError):
        return None
    a, b, c = (float(v) for v in popt)
    if s is not None and len(x) > 3:
        # The weights are each point's own standard error; scatter beyond them (seed to seed) widens
        # the intervals by the reduced chi-square, never narrows them.
        chi2 = float(np.sum(((y - curve(x, a, b, c)) / s) ** 2)) / (len(x) - 3)
        pcov = pcov * max(1.0, chi2)
    se = np.sqrt(np.clip(np.diag(pcov), 0, None))
    finite = bool(np.all(np.isfinite(pcov)))
    out: dict[str, Any] = {"a": a, "b": b, "c": c, "n_points": len(x), "weighted": s is not None}
    for name, value, err in zip(("a", "b", "c"), (a, b, c), se, strict=True):
        out[f"{name}_se"] = float(err) if finite else None
        out[f"{name}_ci95"] = [value - Z95 * float(err), value + Z95 * float(err)] if finite else None
    out["covariance"] = pcov.tolist() if finite else None
    residuals = y - curve(x, a, b, c)
    out["rmse"] = float(np.sqrt(np.mean(residuals**2)))
    return out


def _needed(a: np.ndarray, b: np.ndarray, c: np.ndarray, target: float) -> np.ndarray:
    """n with a - b n^-c = target; inf where the curve never reaches it (a <= target)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n = np.power(b / (a - target), 1.0 / c)
    return np.where((a > target) & (b > 0), n, np.inf)


def samples_needed(fit: dict[str, Any] | None, target: float, seed: int = 0) -> dict[str, Any]:
    """How many training samples the curve says a target AUROC needs, with a 95% interval; or why not."""
    base: dict[str, Any] = {"target_auroc": target}
    if fit is None:
        return {**base, "reachable": None, "reason": "no learning curve (it needs three sizes that fitted)"}
    a_hi = fit["a_ci95"][1] if fit.get("a_ci95") else fit["a"]
    if target >= a_hi:
        return {**base, "reachable": False, "plateau_a": fit["a"], "plateau_a_ci95": fit.get("a_ci95"),
                "reason": "not reachable on this curve: the target is at or above the upper bound of its "
                "plateau a"}  # fmt: skip
    point = float(_needed(np.array(fit["a"]), np.array(fit["b"]), np.array(fit["c"]), target))
    interval: list[float | None] | None = None
    if fit.get("covariance") is not None:
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal([fit["a"], fit["b"], fit["c"]], fit["covariance"], DRAWS)
        draws = np.clip(draws, BOUNDS[0], BOUNDS[1])
        # Draws that never reach the target count as the largest; a quantile among them is open (None).
        n = np.minimum(_needed(draws[:, 0], draws[:, 1], draws[:, 2], target), NEVER)
        lo, hi = np.quantile(n, [0.025, 0.975])
        interval = [float(lo) if lo < NEVER else None, float(hi) if hi < NEVER else None]
    if not math.isfinite(point):
        base["reason"] = (
            "the fitted plateau a is below the target; only the upper part of its interval reaches it"
        )
    return {
        **base,
        "reachable": math.isfinite(point),
        "samples": math.ceil(point) if math.isfinite(point) else None,
        "samples_ci95": interval,  # an open end (None): part of the curve's uncertainty never reaches it
        "plateau_a": fit["a"],
        "plateau_a_ci95": fit.get("a_ci95"),
    }

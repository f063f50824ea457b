"""An experiment's two figures as PNG bytes (matplotlib's Agg backend, no display): test AUROC by
training-set size with its intervals and the fitted learning curve, and epoch seconds by size with the
linear fit."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from platform_core.experiments import fits

AUROC_FIGURE = "auroc_by_size"
EPOCH_FIGURE = "epoch_time_by_size"
FIGURES = (AUROC_FIGURE, EPOCH_FIGURE)


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(6, 4.5), dpi=100)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def auroc_png(result: dict[str, Any]) -> bytes:
    """Each run's test AUROC (dots), the mean per size with the mean bootstrap 95% CI (bars), and the
    curve a - b n^-c when it was fitted."""
    fig = _figure()
    ax = fig.add_subplot()
    runs = [r for r in result["runs"] if r["status"] == "succeeded" and r["metrics"]["auroc"] is not None]
    ax.scatter([r["size"] for r in runs], [r["metrics"]["auroc"] for r in runs], s=12, alpha=0.4,
               color="grey", label="runs (seeds)")  # fmt: skip
    sizes = [s for s in result["sizes"] if s["metrics"]["auroc"]["mean"] is not None]
    if sizes:
        x = np.array([s["size"] for s in sizes], dtype=float)
        y = np.array([s["metrics"]["auroc"]["mean"] for s in sizes])
        ci = [s["metrics"]["auroc"]["ci95"] or [m, m] for s, m in zip(sizes, y, strict=True)]
        err = np.array(
            [[m - c[0] for c, m in zip(ci, y, strict=True)], [c[1] - m for c, m in zip(ci, y, strict=True)]]
        )
        ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", capsize=4, label="mean, 95% CI")
    curve = result["fits"].get("learning_curve")
    if curve is not None and sizes:
        grid = np.geomspace(min(s["size"] for s in sizes) / 1.5, max(s["size"] for s in sizes) * 2, 100)
        ax.plot(grid, fits.curve(grid, curve["a"], curve["b"], curve["c"]), linestyle="--",
                label=f"fit {curve['a']:.3f} - {curve['b']:.2f} n^-{curve['c']:.2f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="training samples", ylabel="test AUROC (macro)", title="AUROC by dataset size")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def epoch_png(result: dict[str, Any]) -> bytes:
    """Each run's mean epoch seconds and the linear fit (seconds at 100 samples, + per 100 more)."""
    fig = _figure()
    ax = fig.add_subplot()
    runs = [r for r in result["runs"] if r["status"] == "succeeded" and r.get("epoch_seconds") is not None]
    ax.scatter([r["size"] for r in runs], [r["epoch_seconds"] for r in runs], s=16, label="runs")
    line = result["fits"].get("epoch_time")
    if line is not None and runs:
        grid = np.linspace(0, max(r["size"] for r in runs) * 1.1, 50)
        label = f"{line['at_100_s']:.1f} s at 100, +{line['seconds_per_100']:.2f} s per 100"
        ax.plot(grid, line["intercept_s"] + line["slope_s_per_sample"] * grid, linestyle="--", label=label)
    ax.set(xlabel="training samples", ylabel="seconds per epoch", title="Epoch time by dataset size")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def render(result: dict[str, Any]) -> dict[str, bytes]:
    return {AUROC_FIGURE: auroc_png(result), EPOCH_FIGURE: epoch_png(result)}

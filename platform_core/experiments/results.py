"""An experiment's result from its runs' jobs: per run, per size (the spread across seeds), the fits.

Per size, each test metric has `mean`, `sd`, `min` and `max` across the seeds that succeeded, and
`ci95`: the mean across those seeds of each run's bootstrap 95% interval (the test-set sampling
uncertainty of one model of that size; the spread across seeds is the training-set and seed part).
Epoch seconds are per run the mean over its epochs (after the first, when it ran more than one: see
_steady; `first_epoch_seconds` keeps the first) of the whole epoch (training pass + the fixed
validation pass), of the training pass alone, and of the training pass's CPU seconds (the worker
process, all threads). `fits.epoch_time` is the linear fit of the whole epoch's wall seconds (the white
paper's figure); `fits.train_cpu_time` the same fit of the CPU seconds, which a machine shared with
other work does not inflate the way it inflates wall time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from platform_core.experiments import fits
from platform_core.jobs.models import Job

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1")


@dataclass(frozen=True)
class RunJob:
    size: int
    seed: int
    job: Job


def _mean(values: Sequence[Any]) -> float | None:
    kept = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def _steady(per_epoch: Sequence[Any]) -> Sequence[Any]:
    """The epochs after the first when there are more: the first also pays one-time costs (the allocator,
    kernel choice, cold caches, a freshly forked worker) that do not grow with the training set."""
    return per_epoch[1:] if len(per_epoch) > 1 else per_epoch


def run_row(run: RunJob) -> dict[str, Any]:
    job, result = run.job, run.job.result or {}
    macro, ci = result.get("macro") or {}, (result.get("ci95") or {}).get("macro") or {}
    row: dict[str, Any] = {"size": run.size, "seed": run.seed, "job_id": job.id, "status": job.status}
    if job.status == "succeeded":
        row["metrics"] = {m: macro.get(m) for m in METRICS}
        row["ci95"] = {m: ci.get(m) for m in METRICS}
        for key in ("epoch_seconds", "train_seconds", "train_cpu_seconds"):
            row[key] = _mean(_steady(result.get(key) or []))
        row["first_epoch_seconds"] = (result.get("epoch_seconds") or [None])[0]
        row["epochs"] = len(result.get("epoch_seconds") or [])
    return row


def _spread(values: Sequence[float | None]) -> dict[str, Any]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(arr) == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return {
        "n": len(arr),
        "mean": float(arr.mean()),
        "sd": sd,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def _mean_interval(intervals: Sequence[Any]) -> list[float] | None:
    kept = [i for i in intervals if isinstance(i, list | tuple) and len(i) == 2 and None not in i]
    if not kept:
        return None
    return [float(np.mean([i[0] for i in kept])), float(np.mean([i[1] for i in kept]))]


def size_row(size: int, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in rows if r["status"] == "succeeded"]
    metrics = {}
    for m in METRICS:
        metrics[m] = {
            **_spread([r["metrics"][m] for r in done]),
            "ci95": _mean_interval([r["ci95"][m] for r in done]),
        }
    return {
        "size": size,
        "runs": len(rows),
        "succeeded": len(done),
        "metrics": metrics,
        "epoch_seconds": _spread([r["epoch_seconds"] for r in done]),
        "train_seconds": _spread([r["train_seconds"] for r in done]),
        "train_cpu_seconds": _spread([r["train_cpu_seconds"] for r in done]),
    }


def _sigma(interval: Any) -> float | None:
    if not isinstance(interval, list | tuple) or len(interval) != 2 or None in interval:
        return None
    width = float(interval[1]) - float(interval[0])
    return width / (2 * fits.Z95) if width > 0 else None


def curve_fits(run_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The linear fit of epoch seconds and the learning curve, over every run that succeeded."""
    done = [r for r in run_rows if r["status"] == "succeeded"]
    timed = [r for r in done if r["epoch_seconds"] is not None]
    epoch_time = fits.linear([r["size"] for r in timed], [r["epoch_seconds"] for r in timed])
    cpu = [r for r in done if r["train_cpu_seconds"] is not None]
    cpu_time = fits.linear([r["size"] for r in cpu], [r["train_cpu_seconds"] for r in cpu])
    scored = [r for r in done if r["metrics"]["auroc"] is not None]
    sigmas = [_sigma(r["ci95"]["auroc"]) for r in scored]
    weighted = bool(scored) and all(s is not None for s in sigmas)
    curve = fits.power_law(
        [r["size"] for r in scored],
        [r["metrics"]["auroc"] for r in scored],
        [float(s) for s in sigmas if s is not None] if weighted else None,
    )
    return {"epoch_time": epoch_time, "train_cpu_time": cpu_time, "learning_curve": curve}


def summarise(runs: Sequence[RunJob], sizes: Sequence[int]) -> dict[str, Any]:
    rows = [run_row(r) for r in sorted(runs, key=lambda r: (r.size, r.seed))]
    return {
        "sizes": [size_row(n, [r for r in rows if r["size"] == n]) for n in sizes],
        "runs": rows,
        "fits": curve_fits(rows),
        "metric_names": list(METRICS),
    }

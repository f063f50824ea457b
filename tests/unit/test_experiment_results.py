"""An experiment's result from its runs' jobs: the spread across seeds per size (mean, sd, min, max), the
mean bootstrap CI, epoch seconds without the first epoch, the fits over every run, the final status and
the figures as PNG."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from platform_core.experiments import fits, plots, results
from platform_core.experiments.finalize import final_status
from platform_core.jobs.models import Job

SIZES = [100, 400, 1600]
SEEDS = [1, 2]


def _job(size: int, seed: int, status: str = "succeeded") -> Job:
    auroc = float(fits.curve(size, 0.9, 0.5, 0.4)) + (0.01 if seed == 2 else -0.01)
    macro = {"auroc": auroc, "auprc": auroc - 0.1, "sensitivity": 0.8, "specificity": 0.7, "f1": 0.6}
    ci = {m: [v - 0.05, v + 0.05] for m, v in macro.items()}
    seconds = 2.0 + 0.01 * size
    result: dict[str, Any] = {"macro": macro, "ci95": {"macro": ci},
                              "epoch_seconds": [seconds + 5.0, seconds, seconds],  # the first pays start-up
                              "train_seconds": [seconds, seconds - 1, seconds - 1],
                              "train_cpu_seconds": [1.0, 0.5 + 0.004 * size, 0.5 + 0.004 * size]}  # fmt: skip
    return Job(id=f"ftjob_{size}_{seed}", status=status, result=result if status == "succeeded" else None)


def _summary(failed: tuple[int, int] | None = None) -> dict[str, Any]:
    runs = [results.RunJob(n, s, _job(n, s, "failed" if (n, s) == failed else "succeeded"))
            for n in SIZES for s in SEEDS]  # fmt: skip
    return results.summarise(runs, SIZES)


def test_each_size_has_the_spread_across_seeds_and_the_mean_ci() -> None:
    out = _summary()
    row = out["sizes"][0]
    truth = float(fits.curve(100, 0.9, 0.5, 0.4))
    auroc = row["metrics"]["auroc"]
    assert auroc["n"] == 2 and auroc["mean"] == pytest.approx(truth)
    assert auroc["min"] == pytest.approx(truth - 0.01) and auroc["max"] == pytest.approx(truth + 0.01)
    assert auroc["sd"] == pytest.approx(np.std([truth - 0.01, truth + 0.01], ddof=1))
    assert auroc["ci95"] == pytest.approx([truth - 0.05, truth + 0.05])
    assert row["epoch_seconds"]["mean"] == pytest.approx(3.0)  # 2 + 0.01 * 100, without the first epoch
    assert out["runs"][0]["first_epoch_seconds"] == pytest.approx(8.0)


def test_fits_run_over_every_run() -> None:
    out = _summary()
    line = out["fits"]["epoch_time"]
    assert line["n_points"] == 6 and line["seconds_per_100"] == pytest.approx(1.0)
    assert line["intercept_s"] == pytest.approx(2.0)
    assert out["fits"]["train_cpu_time"]["seconds_per_100"] == pytest.approx(0.4)
    curve = out["fits"]["learning_curve"]
    assert curve is not None and curve["n_points"] == 6 and curve["weighted"] is True


def test_a_failed_run_is_left_out_and_the_status_says_so() -> None:
    out = _summary(failed=(400, 2))
    assert out["sizes"][1]["succeeded"] == 1 and out["sizes"][1]["runs"] == 2
    assert out["sizes"][1]["metrics"]["auroc"]["sd"] is None  # one seed: no spread
    assert final_status(out) == "completed_with_failures"
    assert final_status(_summary()) == "succeeded"


def test_figures_are_pngs() -> None:
    for name, png in plots.render(_summary()).items():
        assert name in plots.FIGURES and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000

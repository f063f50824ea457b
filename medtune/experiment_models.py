"""Typed responses of data-volume experiments (GET /v1/fine-tuning/experiments/{id})."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from medtune.models import Resource

METRICS = ("auroc", "auprc", "sensitivity", "specificity", "f1")


class ExperimentRun(Resource):
    size: int
    seed: int
    job_id: str
    status: str


class SamplesNeeded(Resource):
    """What the learning curve says a target test AUROC needs: `samples` with `samples_ci95` (an open
    end is None), or `reachable` False and a `reason`."""

    target_auroc: float
    reachable: bool | None = None
    samples: int | None = None
    samples_ci95: list[float | None] | None = None
    plateau_a: float | None = None
    plateau_a_ci95: list[float] | None = None
    reason: str | None = None


class Experiment(Resource):
    id: str
    object: str = "fine_tuning.experiment"
    type: str = "data_volume"
    status: str
    dataset_id: str | None = None
    split_id: str | None = None
    sizes: list[int] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    balanced: bool = False
    labels: list[str] | None = None
    base_model: str | None = None
    runs: list[ExperimentRun] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    target: SamplesNeeded | None = None
    figures: dict[str, str] = Field(default_factory=dict)
    mlflow_run_id: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Every run has ended (succeeded, completed_with_failures, failed or cancelled)."""
        return self.status != "running"

    @property
    def epoch_time_fit(self) -> dict[str, Any] | None:
        """`{intercept_s, seconds_per_100, at_100_s, r2, ...}`: epoch seconds = intercept + slope * size."""
        found = ((self.result or {}).get("fits") or {}).get("epoch_time")
        return dict(found) if isinstance(found, dict) else None

    @property
    def learning_curve(self) -> dict[str, Any] | None:
        """`{a, b, c, a_ci95, b_ci95, c_ci95, ...}` of AUROC(n) = a - b n^-c."""
        found = ((self.result or {}).get("fits") or {}).get("learning_curve")
        return dict(found) if isinstance(found, dict) else None

    def table(self) -> list[dict[str, Any]]:
        """One row per size, in the white paper's columns: each metric's mean across seeds, its SD and
        mean bootstrap 95% CI, the runs that succeeded, and the mean epoch seconds."""
        rows = []
        for size in (self.result or {}).get("sizes", []):
            row: dict[str, Any] = {"size": size["size"], "succeeded": size["succeeded"], "runs": size["runs"]}
            for m in METRICS:
                found = size["metrics"].get(m) or {}
                row[m] = found.get("mean")
                row[f"{m}_sd"] = found.get("sd")
                row[f"{m}_ci95"] = found.get("ci95")
            row["epoch_seconds"] = (size.get("epoch_seconds") or {}).get("mean")
            rows.append(row)
        return rows

"""Recompute an experiment's result from its runs' jobs: the table by size, the fits, the figures (PNG)
and result.json in the object store; once every run has ended, its final status and, when tracking is
on, one MLflow run that holds the figures and has the runs' MLflow runs as its children.

Called by a task each time one of its runs ends (so a partial result shows while the rest train), and
idempotent: it locks the experiment row and writes the whole result again."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.orm import Session

from platform_core.experiments import plots, results
from platform_core.experiments import repository as repo
from platform_core.experiments.models import Experiment
from platform_core.jobs.status import now
from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.experiments")

FINAL = ("succeeded", "completed_with_failures", "failed", "cancelled")


def figure_key(experiment_id: str, name: str) -> str:
    return f"experiments/{experiment_id}/figures/{name}.png"


def result_key(experiment_id: str) -> str:
    return f"experiments/{experiment_id}/result.json"


def final_status(result: dict[str, Any]) -> str:
    succeeded = [s["succeeded"] for s in result["sizes"]]
    if not any(succeeded):
        return "cancelled" if all(r["status"] == "cancelled" for r in result["runs"]) else "failed"
    return (
        "succeeded" if all(r["status"] == "succeeded" for r in result["runs"]) else "completed_with_failures"
    )


def finalize(
    session: Session,
    store: ObjectStore,
    experiment_id: str,
    tracking_uri: str | None = None,
    ui_url: str | None = None,
) -> str:
    """Write the experiment's result as it stands; returns its status."""
    experiment = repo.get(session, experiment_id, lock=True)
    runs = repo.runs(session, experiment.id)
    found = repo.jobs(session, [r.job_id for r in runs])
    run_jobs = [results.RunJob(r.size, r.seed, found[r.job_id]) for r in runs if r.job_id in found]
    result = results.summarise(run_jobs, list(experiment.request["sizes"]))
    complete = all(rj.job.is_terminal for rj in run_jobs)
    figures = plots.render(result)
    for name, png in figures.items():
        store.put_bytes(figure_key(experiment.id, name), png, "image/png")
    result["figures"] = {name: figure_key(experiment.id, name) for name in figures}
    result["complete"] = complete
    document = json.dumps({"experiment_id": experiment.id, "request": experiment.request, **result}, indent=2)
    store.put_bytes(result_key(experiment.id), document.encode(), "application/json")
    if complete:
        if experiment.status not in FINAL:
            experiment.status = final_status(result)
        experiment.finished_at = experiment.finished_at or now()
        if tracking_uri and experiment.mlflow_run_id is None:
            experiment.mlflow_run_id = log_run(
                experiment, result, figures, document, run_jobs, tracking_uri, ui_url
            )
    experiment.result = result
    session.flush()
    return experiment.status


def log_run(
    experiment: Experiment,
    result: dict[str, Any],
    figures: dict[str, bytes],
    document: str,
    run_jobs: list[results.RunJob],
    tracking_uri: str,
    ui_url: str | None,
) -> str | None:
    """One MLflow run for the experiment: its sweep as parameters, per-size means as metrics stepped by
    size, the figures and result.json as artifacts; each run's own MLflow run becomes its child.
    Tracking never fails an experiment: a failure is logged and the run id stays empty."""
    from platform_core.training.tracking import MlflowTracker

    try:
        tracker = MlflowTracker(tracking_uri, f"medtune/{experiment.project_id}", experiment.id, ui_url)
        request = experiment.request
        params = {k: request[k] for k in ("sizes", "seeds", "balanced", "base_model")}
        tracker.log_params({"type": experiment.type, **params})
        tracker.set_tags(
            {"medtune.experiment_id": experiment.id, "medtune.split_id": str(experiment.split_id)}
        )
        for row in result["sizes"]:
            means = {f"test_{m}_mean": v["mean"] for m, v in row["metrics"].items() if v["mean"] is not None}
            if row["epoch_seconds"]["mean"] is not None:
                means["epoch_seconds_mean"] = row["epoch_seconds"]["mean"]
            tracker.log_metrics(means, step=int(row["size"]))
        for name, png in figures.items():
            tracker.log_artifact(f"figures/{name}.png", png)
        tracker.log_artifact("result.json", document.encode())
        tracker.close("FINISHED")
        for rj in run_jobs:
            if rj.job.mlflow_run_id:
                tracker.client.set_tag(rj.job.mlflow_run_id, "mlflow.parentRunId", tracker.run_id)
        return tracker.run_id
    except Exception as exc:
        log.warning("MLflow logging of experiment %s failed: %s: %s", experiment.id, type(exc).__name__, exc)
        return None

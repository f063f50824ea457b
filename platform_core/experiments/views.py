"""Response shapes of experiments: the experiment with its runs' statuses, its result, figure URLs and,
for a target AUROC, the samples the learning curve says it needs."""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import Session

from platform_core.errors import NotFound
from platform_core.experiments import fits
from platform_core.experiments import repository as repo
from platform_core.experiments.finalize import figure_key
from platform_core.experiments.models import Experiment
from platform_core.experiments.plots import FIGURES
from platform_core.experiments.schemas import ExperimentOut, RunOut
from platform_core.pagination import Page
from platform_core.storage import ObjectStore

API_PREFIX = "/v1/fine-tuning/experiments"


def experiment_out(
    session: Session, experiment: Experiment, target_auroc: float | None = None
) -> ExperimentOut:
    runs = repo.runs(session, experiment.id)
    found = repo.jobs(session, [r.job_id for r in runs])
    request = experiment.request
    result = experiment.result
    target = target_auroc if target_auroc is not None else request.get("target_auroc")
    needed = None
    if target is not None and result is not None:
        needed = fits.samples_needed(result["fits"].get("learning_curve"), float(target))
    figures = {}
    if result is not None and result.get("figures"):
        figures = {name: f"{API_PREFIX}/{experiment.id}/figures/{name}.png" for name in FIGURES}
    return ExperimentOut(
        id=experiment.id,
        type=experiment.type,
        created_at=experiment.created_at,
        finished_at=experiment.finished_at,
        status=experiment.status,
        dataset_id=experiment.dataset_id,
        split_id=experiment.split_id,
        sizes=list(request["sizes"]),
        seeds=list(request["seeds"]),
        balanced=bool(request["balanced"]),
        labels=request.get("balanced_on"),
        base_model=str(request["base_model"]),
        runs=[
            RunOut(
                size=r.size,
                seed=r.seed,
                job_id=r.job_id,
                status=found[r.job_id].status if r.job_id in found else "deleted",
            )  # fmt: skip
            for r in runs
        ],
        result=result,
        target=needed,
        figures=figures,
        mlflow_run_id=experiment.mlflow_run_id,
    )


def get(session: Session, project_id: str, experiment_id: str) -> Experiment:
    return repo.get(session, experiment_id, project_id)


def experiments_page(session: Session, project_id: str, limit: int, after: str | None) -> Page[ExperimentOut]:
    """Newest first: one row more than shown says whether more remain."""
    rows = repo.list_experiments(session, project_id, limit + 1, after)
    return Page.build(rows, limit, partial(experiment_out, session))


def figure_png(session: Session, store: ObjectStore, project_id: str, experiment_id: str, name: str) -> bytes:
    """A figure's PNG as of the experiment's latest result; NotFound before there is one."""
    experiment = repo.get(session, experiment_id, project_id)
    key = figure_key(experiment.id, name)
    if name not in FIGURES or experiment.result is None or not store.exists(key):
        raise NotFound(f"experiment {experiment.id} has no figure '{name}' (yet)", param="name")
    return store.get_bytes(key)

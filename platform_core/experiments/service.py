"""Data-volume experiments: create one (nested subsets per seed, one ordinary job per size and seed on
the split's fixed validation and test parts), cancel one, and note a run's end so the result is
recomputed (finalize.py). Services flush; the request or the task commits; tasks go through the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from platform_core import tasks
from platform_core.db import outbox
from platform_core.errors import Conflict, Invalid
from platform_core.experiments import repository as repo
from platform_core.experiments import subsets
from platform_core.experiments.models import Experiment, ExperimentRun
from platform_core.experiments.schemas import MAX_RUNS, ExperimentCreate
from platform_core.ids import new_id
from platform_core.jobs import service as jobs
from platform_core.jobs.models import TERMINAL as JOB_TERMINAL
from platform_core.jobs.models import Job
from platform_core.jobs.schemas import JobCreate

FINALIZE_TASK = tasks.FINALIZE_EXPERIMENT
TERMINAL = ("succeeded", "completed_with_failures", "failed", "cancelled")
SWEEP_FIELDS = {"type", "sizes", "seeds", "balanced", "labels", "target_auroc"}


def training_pool(
    session: Session, project_id: str, split_id: str, wanted: Sequence[str] | None
) -> tuple[list[subsets.Candidate], list[str]]:
    """The split's training images a run can train on (a pixel cache; a known label when there is one
    label), and the labels the subsets are balanced on."""
    from platform_core.datasets import repository as datasets
    from platform_core.splits import checks
    from platform_core.splits.models import DatasetVersion

    verified = checks.verify(session, split_id, project_id)
    version = session.get(DatasetVersion, verified.record.dataset_version_id)
    names = [str(n) for n in version.label_names] if version is not None else []
    unknown = [n for n in (wanted or []) if n not in names]
    if unknown:
        raise Invalid(f"labels {unknown} are not labels of the dataset ({', '.join(names)})", param="labels")
    train = [r for r in verified.rows if verified.assignment.get(r.image_id) == "train"]
    cached = datasets.cache_keys(session, [r.image_id for r in train])
    pool = [
        subsets.Candidate(r.image_id, dict(r.labels))
        for r in train
        if cached.get(r.image_id) and not (len(names) == 1 and r.labels.get(names[0]) is None)
    ]
    return pool, list(wanted or names)


def _check(body: ExperimentCreate) -> None:
    if body.split_id is None:
        raise Invalid(
            "an experiment needs split_id: every size is validated and tested on that split's fixed "
            "val and test parts",
            param="split_id",
        )
    if body.seed is not None:
        raise Invalid("an experiment takes seeds (one run per size and seed), not seed", param="seed")
    if len(body.sizes) * len(body.seeds) > MAX_RUNS:
        raise Invalid(f"sizes x seeds makes more than {MAX_RUNS} jobs", param="sizes")


def create(session: Session, project_id: str, body: ExperimentCreate) -> Experiment:
    _check(body)
    assert body.split_id is not None
    pool, balance_on = training_pool(session, project_id, body.split_id, body.labels)
    try:
        drawn = {
            seed: subsets.nested(pool, body.sizes, seed, body.balanced, balance_on) for seed in body.seeds
        }
    except ValueError as exc:
        raise Invalid(f"{exc} of split {body.split_id}", param="sizes") from None
    experiment = Experiment(
        id=new_id("ftexp"),
        project_id=project_id,
        type=body.type,
        dataset_id=body.dataset_id,
        split_id=body.split_id,
        request={**body.model_dump(mode="json"), "balanced_on": balance_on},
        status="running",
    )
    session.add(experiment)
    session.flush()
    fields = body.model_dump(exclude=SWEEP_FIELDS)
    for seed, by_size in drawn.items():
        for size, ids in by_size.items():
            meta = {**body.metadata, "experiment_id": experiment.id, "train_size": str(size)}
            job_body = JobCreate.model_validate({**fields, "seed": seed, "metadata": meta})
            job = jobs.create_job(session, project_id, job_body, train_subset=ids)
            session.add(ExperimentRun(id=new_id("ftexprun"), experiment_id=experiment.id, job_id=job.id,
                                      size=size, seed=seed))  # fmt: skip
    session.flush()
    return experiment


def cancel(session: Session, project_id: str, experiment_id: str) -> Experiment:
    """Cancel every run that has not ended; the result is recomputed from what finished."""
    experiment = repo.get(session, experiment_id, project_id, lock=True)
    if experiment.status in TERMINAL:
        raise Conflict(f"experiment {experiment.id} already {experiment.status}", param="experiment_id")
    found = repo.jobs(session, [r.job_id for r in repo.runs(session, experiment.id)])
    for job in found.values():
        if not job.is_terminal:
            jobs.cancel(session, project_id, job.id)
    experiment.status = "cancelled"
    session.flush()
    outbox.enqueue(session, FINALIZE_TASK, experiment.id)
    return experiment


def job_ended(session: Session, job_id: str) -> str | None:
    """A job reached a final status: if it is an experiment's run, recompute that experiment."""
    run = repo.run_for_job(session, job_id)
    job = session.get(Job, job_id)
    if run is None or job is None or not job.is_terminal:
        return None
    outbox.enqueue(session, FINALIZE_TASK, run.experiment_id)
    return run.experiment_id


def finalize_stalled(session: Session) -> list[str]:
    """The beat's backstop: send the finalize of each running experiment whose runs have all ended."""
    found = list(repo.stalled(session, JOB_TERMINAL))
    for experiment_id in found:
        outbox.enqueue(session, FINALIZE_TASK, experiment_id)
    return found

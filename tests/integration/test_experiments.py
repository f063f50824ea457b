"""A data-volume experiment end to end through a real worker: ingested radiographs, a tiny model
(test_resnet), three nested training-set sizes as three jobs on the queue; the result by size, the fits,
the figures, MLflow, the SDK, the CLI, and the refusals.

A live stack (tests/live.py): uvicorn serving the API, one real Celery worker process on the embedded
broker, PostgreSQL, a file object store, MLflow on SQLite. The images are 224 px so that an epoch's
cost grows measurably with the number of training images, and the worker runs torch on one thread:
on a small machine shared with other work, two OpenMP threads that spin for a core take ten times as
long and their CPU time swells with the contention, which would measure the scheduler, not the work."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

import medtune
from medtune.experiment_models import Experiment
from tests.live import Live, live_platform, sample_files
from tests.services import wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

PATIENTS = 72  # 36 train, 18 val, 18 test
SIZES = [8, 16, 32]
HYPERPARAMETERS = {
    "epochs": 3,
    "batch_size": 4,
    "image_size": 224,
    "augmentation": "none",
    "warmup_epochs": 0,
}
METHOD = {"type": "lora", "lora": {"r": 4, "alpha": 8}}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # the worker process inherits it
        with live_platform(tmp_path_factory.mktemp("live-experiments")) as platform:
            yield platform


@pytest.fixture(scope="module")
def split(live: Live, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(dataset id, split id): PATIENTS radiographs of 224 px with an alternating label, ingested, split."""
    paths, labels_csv = sample_files(tmp_path_factory.mktemp("volume") / "dicoms", PATIENTS, size=224)
    with medtune.Client(live.url, live.key) as c:
        ds = c.datasets.create("volume", "binary", ["finding"], min_image_size=64, cache_size=224)
        c.datasets.upload(ds, paths, progress=False)
        c.datasets.upload_labels(ds, labels_csv)
        assert c.datasets.wait(ds, timeout=180, poll_interval=0.5).counts.accepted == PATIENTS, (
            live.worker_log()
        )
        made = c.splits.create(ds, seed=3, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    return ds.id, made.id


@pytest.fixture(scope="module")
def experiment(live: Live, split: tuple[str, str]) -> Experiment:
    dataset_id, split_id = split
    with medtune.Client(live.url, live.key) as c:
        created = c.experiments.create(
            type="data_volume", dataset_id=dataset_id, split_id=split_id, sizes=SIZES, seeds=[1],
            balanced=True, base_model="test_resnet", weights="random", method=METHOD,
            hyperparameters=dict(HYPERPARAMETERS),
        )  # fmt: skip
        assert created.status == "running" and [r.size for r in created.runs] == SIZES
        try:
            done = c.experiments.wait(created, timeout=300, poll_interval=0.5)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{live.worker_log()}") from None
        # The last run's end sends the finalize that writes the complete result; wait() returned on it.
        assert done.status == "succeeded", (done.model_dump(), live.worker_log())
    return done


def _subsets(live: Live, job_ids: list[str]) -> dict[str, list[str]]:
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.jobs.models import Job

    engine = make_engine(live.settings.db_url)
    try:
        with make_sessionmaker(engine)() as s:
            return {j: list(s.get(Job, j).train_subset or []) for j in job_ids}  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_runs_train_on_nested_balanced_subsets_and_share_val_and_test(
    live: Live, experiment: Experiment
) -> None:
    runs = sorted(experiment.runs, key=lambda r: r.size)
    subsets = _subsets(live, [r.job_id for r in runs])
    small, middle, large = (set(subsets[r.job_id]) for r in runs)
    assert [len(small), len(middle), len(large)] == SIZES
    assert small <= middle <= large
    with medtune.Client(live.url, live.key) as c:
        jobs = [c.jobs.get(r.job_id) for r in runs]
        for run, job in zip(runs, jobs, strict=True):
            assert job.status == "succeeded" and job.split["id"] == experiment.split_id
            assert job.metadata["experiment_id"] == experiment.id and job.metadata["train_size"] == str(
                run.size
            )
            events = [e.message for e in c.jobs.events(job, limit=100)]
            assert any(f"validated: {run.size} training images" in m for m in events), events
    assert len({j.result["n_test"] for j in jobs}) == 1  # one fixed test split for every size


def test_result_has_metrics_with_cis_spread_and_epoch_seconds_by_size(experiment: Experiment) -> None:
    result = experiment.result
    assert [row["size"] for row in result["sizes"]] == SIZES
    for row in result["sizes"]:
        assert row["succeeded"] == row["runs"] == 1
        for metric in ("auroc", "auprc", "sensitivity", "specificity", "f1"):
            found = row["metrics"][metric]
            assert set(found) >= {"mean", "sd", "min", "max", "ci95", "n"}
            assert found["n"] == 1 and found["min"] <= found["mean"] <= found["max"]
        assert row["metrics"]["auroc"]["ci95"] is not None
        assert row["epoch_seconds"]["mean"] > 0 and row["train_seconds"]["mean"] > 0
    assert [r["epochs"] for r in result["runs"]] == [3, 3, 3]
    assert [row["size"] for row in experiment.table()] == SIZES


def test_epoch_time_fit_recovers_the_measured_slope(experiment: Experiment) -> None:
    """Each fit's seconds per sample against the direct measurement: the change in measured seconds
    between the smallest and the largest run over the change in size, within 20%. Both the wall-time fit
    (the white paper's figure) and the CPU-time fit (the work alone) are held to it."""
    runs = {r["size"]: r for r in experiment.result["runs"]}
    small, large = runs[SIZES[0]], runs[SIZES[-1]]

    def direct(key: str) -> float:
        return float(large[key] - small[key]) / (SIZES[-1] - SIZES[0])

    cpu = experiment.result["fits"]["train_cpu_time"]
    assert cpu is not None and cpu["n_points"] == 3
    assert direct("train_cpu_seconds") > 0, runs  # more images, more work: measurable on this data
    assert cpu["slope_s_per_sample"] == pytest.approx(direct("train_cpu_seconds"), rel=0.2), (cpu, runs)
    wall = experiment.epoch_time_fit
    assert wall is not None and wall["n_points"] == 3
    assert wall["seconds_per_100"] == pytest.approx(100 * wall["slope_s_per_sample"])
    assert direct("epoch_seconds") > 0, runs
    assert wall["slope_s_per_sample"] == pytest.approx(direct("epoch_seconds"), rel=0.2), (wall, runs)


def test_target_auroc_reads_the_learning_curve(live: Live, experiment: Experiment) -> None:
    with medtune.Client(live.url, live.key) as c:
        read = c.experiments.get(experiment.id, target_auroc=0.99)
    assert read.target is not None and read.target.target_auroc == 0.99
    curve = read.learning_curve
    if curve is None:  # three points that did not fit: it says so instead of guessing
        assert read.target.reachable is None and "no learning curve" in (read.target.reason or "")
    else:
        assert 0 <= curve["a"] <= 1 and read.target.reachable in (True, False)
        assert read.target.samples is not None or read.target.reason


def test_figures_are_pngs_and_in_mlflow(live: Live, experiment: Experiment) -> None:
    from mlflow.tracking import MlflowClient

    with httpx.Client(base_url=live.url, headers=live.auth, timeout=30) as http:
        for name, path in experiment.figures.items():
            got = http.get(path)
            assert got.status_code == 200 and got.headers["content-type"] == "image/png", name
            assert got.content.startswith(b"\x89PNG\r\n\x1a\n")
        missing = http.get(f"/v1/fine-tuning/experiments/{experiment.id}/figures/nope.png")
        assert missing.status_code == 404
    assert set(experiment.figures) == {"auroc_by_size", "epoch_time_by_size"}
    assert experiment.mlflow_run_id is not None
    mlflow = MlflowClient(tracking_uri=live.settings.mlflow_tracking_uri)
    names = {a.path for a in mlflow.list_artifacts(experiment.mlflow_run_id, "figures")}
    assert names == {"figures/auroc_by_size.png", "figures/epoch_time_by_size.png"}
    with httpx.Client(base_url=live.url, headers=live.auth, timeout=30) as http:
        child = http.get(f"/v1/fine-tuning/jobs/{experiment.runs[0].job_id}").json()
    child_run = mlflow.get_run(child["mlflow_run_id"])
    assert child_run.data.tags.get("mlflow.parentRunId") == experiment.mlflow_run_id


def test_cli_lists_gets_and_waits(live: Live, experiment: Experiment) -> None:
    from medtune.cli.main import app

    env = {"MEDTUNE_URL": live.url, "MEDTUNE_API_KEY": live.key, "COLUMNS": "250"}
    runner = CliRunner()
    listed = runner.invoke(app, ["experiments", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert experiment.id in listed.stdout
    shown = runner.invoke(app, ["experiments", "get", experiment.id, "--target-auroc", "0.99"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "epoch time:" in shown.stdout and "target AUROC 0.99" in shown.stdout
    waited = runner.invoke(app, ["experiments", "wait", experiment.id, "--timeout", "5"], env=env)
    assert waited.exit_code == 0, waited.output


def test_bad_requests_are_refused_with_the_field(live: Live, split: tuple[str, str]) -> None:
    dataset_id, split_id = split
    base = {"type": "data_volume", "dataset_id": dataset_id, "split_id": split_id,
            "base_model": "test_resnet", "weights": "random", "sizes": [8, 16]}  # fmt: skip
    cases = [
        ({"split_id": None}, 422, "split_id"),
        ({"sizes": [8, 400]}, 422, "sizes"),
        ({"sizes": [8, 8]}, 422, "sizes"),
        ({"sizes": [0, 8]}, 422, "sizes"),
        ({"labels": ["nope"]}, 422, "labels"),
        ({"seed": 3}, 422, "seeds"),
        ({"type": "other"}, 422, "type"),
        ({"split_id": "split_missing"}, 404, None),
    ]
    with httpx.Client(base_url=live.url, headers=live.auth, timeout=30) as http:
        for change, status, param in cases:
            got = http.post("/v1/fine-tuning/experiments", json={**base, **change})
            assert got.status_code == status, (change, got.text)
            if param is not None:
                assert param in got.text, (change, got.text)
        assert http.get("/v1/fine-tuning/experiments/ftexp_missing").status_code == 404
        page = http.get("/v1/fine-tuning/experiments", params={"limit": 1}).json()
        assert set(page) == {"data", "has_more", "first_id", "last_id"} and len(page["data"]) <= 1


def _small(c: medtune.Client, dataset_id: str, split_id: str) -> Experiment:
    return c.experiments.create(dataset_id=dataset_id, split_id=split_id, sizes=[8, 16],
                                base_model="test_resnet", weights="random",
                                hyperparameters=dict(HYPERPARAMETERS))  # fmt: skip


def test_cancel_ends_every_run_and_the_result_keeps_what_finished(live: Live, split: tuple[str, str]) -> None:
    dataset_id, split_id = split
    with medtune.Client(live.url, live.key) as c:
        made = _small(c, dataset_id, split_id)
        cancelled = c.experiments.cancel(made)
        assert cancelled.status == "cancelled"
        with pytest.raises(medtune.errors.ConflictError):
            c.experiments.cancel(made)
        # Queued runs end at once; a running one at its next step; the last end sends the finalize.
        done = wait_for(lambda: (e := c.experiments.get(made)).result is not None and e.finished_at and e,
                        120, 0.5, "the cancelled experiment's result")  # fmt: skip
        assert done.status == "cancelled" and {r.status for r in done.runs} <= {"cancelled", "succeeded"}
        assert done.result["complete"] is True and [s["size"] for s in done.result["sizes"]] == [8, 16]


def test_runs_cancelled_over_the_jobs_api_are_found_by_the_backstop(
    live: Live, split: tuple[str, str]
) -> None:
    """Jobs cancelled one by one before they ran end without a task: the beat's backstop finds the
    experiment, and its finalize says it was cancelled."""
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.experiments import finalize, repository
    from platform_core.jobs.models import TERMINAL
    from platform_core.storage import open_store

    dataset_id, split_id = split
    with medtune.Client(live.url, live.key) as c:
        made = _small(c, dataset_id, split_id)
        for run in made.runs:
            c.jobs.cancel(run.job_id)
        wait_for(lambda: all(c.jobs.get(r.job_id).done for r in made.runs), 60, 0.5, "the runs to end")
    engine = make_engine(live.settings.db_url)
    try:
        with make_sessionmaker(engine)() as s:
            assert made.id in repository.stalled(s, TERMINAL)
            store = open_store(live.settings.object_store_url or "", live.settings)
            assert finalize.finalize(s, store, made.id) == "cancelled"
            s.commit()
            assert made.id not in repository.stalled(s, TERMINAL)
    finally:
        engine.dispose()

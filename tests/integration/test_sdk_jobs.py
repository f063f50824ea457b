"""The SDK drives a fine-tuning run on a live server with a real Celery worker: catalog, split, job
(tiny test_vit, random weights), wait, paged and streamed events, checkpoints, cancel, and the CLI's
`jobs watch` exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import medtune
from medtune.models import Dataset
from tests.live import Live, live_platform, sample_files
from tests.services import ROOT

pytestmark = [pytest.mark.services, pytest.mark.slow]

TINY = {"epochs": 2, "batch_size": 4, "image_size": 64, "augmentation": "none"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-jobs")) as platform:
        yield platform


@pytest.fixture(scope="module")
def client(live: Live) -> Iterator[medtune.Client]:
    with medtune.Client(live.url, live.key) as c:
        yield c


@pytest.fixture(scope="module")
def dataset_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    return sample_files(tmp_path_factory.mktemp("jobs-data") / "dicoms", patients=16)


@pytest.fixture(scope="module")
def dataset(client: medtune.Client, live: Live, dataset_files: tuple[list[Path], Path]) -> Dataset:
    paths, labels_csv = dataset_files
    ds = client.datasets.create("jobs", "binary", ["finding"], min_image_size=64, cache_size=64)
    assert client.datasets.upload(ds, paths, progress=False).queued == 16
    assert client.datasets.upload_labels(ds, labels_csv).matched == 16
    ready = client.datasets.wait(ds, timeout=180, poll_interval=0.5)
    assert ready.counts.accepted == 16, live.worker_log()
    return ready


def test_catalog_lists_tiny_models(client: medtune.Client) -> None:
    entries = {e.name: e for e in client.base_models.list()}
    assert {"test_vit", "test_resnet", "vit_base_patch16_224"} <= set(entries)
    assert entries["test_vit"].architecture == "test_vit"


def test_split_then_job_runs_to_success_then_serves(
    client: medtune.Client, dataset: Dataset, live: Live, dataset_files: tuple[list[Path], Path]
) -> None:
    split = client.splits.create(dataset, seed=7, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    assert split.seed == 7 and split.sha256 and set(split.counts) == {"train", "val", "test"}
    assert client.splits.get(dataset, split).sha256 == split.sha256
    manifest = client.splits.manifest(dataset, split)
    assert len(manifest.strip().splitlines()) == 17  # header + one row per image

    job = client.jobs.create(dataset, "test_vit", split=split, weights="random", hyperparameters=TINY, seed=1)
    assert job.status == "validating_files" and job.split and job.split["id"] == split.id

    seen = []
    done = client.jobs.wait(job, timeout=420, poll_interval=1, progress=False, on_update=seen.append)
    assert done.status == "succeeded", (done.error, live.worker_log())
    assert {s.status for s in seen} >= {"succeeded"}
    assert done.hyperparameters and done.hyperparameters["epochs"] == 2
    assert done.best and done.best.metric == "val_auroc" and done.result

    events = list(client.jobs.events(done, limit=3))  # newest first, walked across pages
    assert len(events) >= 4 and events[0].created_at and events[0].created_at >= events[-1].created_at
    epochs = [e.data["epoch"] for e in events if e.type == "metrics" and e.data and "epoch" in e.data]
    assert sorted(epochs) == [1, 2]

    streamed = list(client.jobs.stream(done))  # a finished job: the whole history, then the end
    assert [e.id for e in streamed] == [e.id for e in reversed(events)]

    checkpoints = client.jobs.checkpoints(done)
    assert [c.epoch for c in checkpoints] == [1, 2] and sum(c.is_best for c in checkpoints) == 1
    assert done.id in [j.id for j in client.jobs.list(limit=1)]

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {
        "MEDTUNE_URL": live.url,
        "MEDTUNE_API_KEY": live.key,
        "MEDTUNE_CONFIG_DIR": str(ROOT / "nonexistent"),
    }
    watch = subprocess.run([sys.executable, "-m", "medtune.cli.main", "jobs", "watch", done.id, "--json"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert watch.returncode == 0, watch.stderr
    assert '"status": "succeeded"' in watch.stdout


def test_cancel_a_queued_job(client: medtune.Client, dataset: Dataset, live: Live, tmp_path: Path) -> None:
    job = client.jobs.create(dataset, "test_vit", split_seed=3, weights="random", hyperparameters=TINY)
    cancelled = client.jobs.cancel(job)
    final = client.jobs.wait(cancelled, timeout=120, poll_interval=0.5, progress=False)
    assert final.status == "cancelled"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_URL": live.url, "MEDTUNE_API_KEY": live.key, "MEDTUNE_CONFIG_DIR": str(tmp_path)}
    watch = subprocess.run([sys.executable, "-m", "medtune.cli.main", "jobs", "watch", job.id],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert watch.returncode == 1 and "cancelled" in watch.stdout

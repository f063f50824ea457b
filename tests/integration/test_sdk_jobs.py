"""The SDK (and the CLI beside it) drives fine-tuning and serving on one live server with a real Celery
worker: catalog, split, a job (tiny test_vit, random weights), paged and streamed events, checkpoints;
promote, aliases, predictions, a batch prediction, archive; cancel then resume; a seed sweep on
registered weights (a test_resnet safetensors made here) with mean, SD and 95% CI; the async client;
and the CLI's `jobs watch|resume` and `models alias|predict` with --json and their exit codes.

One server per module; the trained job and its model version are module fixtures, so each test stands
on its own whatever the order."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import medtune
from medtune import errors
from medtune.models import Dataset, Job, ModelVersion, Split
from tests.live import Live, live_platform, sample_files
from tests.services import ROOT

pytestmark = [pytest.mark.services, pytest.mark.slow]

TINY = {"epochs": 2, "batch_size": 4, "image_size": 64, "augmentation": "none"}
ONE_EPOCH = {**TINY, "epochs": 1}


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


@pytest.fixture(scope="module")
def split(client: medtune.Client, dataset: Dataset) -> Split:
    return client.splits.create(dataset, seed=7, fractions={"train": 0.5, "val": 0.25, "test": 0.25})


@pytest.fixture(scope="module")
def trained(client: medtune.Client, dataset: Dataset, split: Split, live: Live) -> Job:
    job = client.jobs.create(dataset, "test_vit", split=split, weights="random", hyperparameters=TINY, seed=1)
    assert job.status == "validating_files" and job.split and job.split["id"] == split.id
    done = client.jobs.wait(job, timeout=420, poll_interval=1, progress=False)
    assert done.status == "succeeded", (done.error, live.worker_log())
    return done


@pytest.fixture(scope="module")
def version(client: medtune.Client, trained: Job) -> ModelVersion:
    return client.models.promote(trained, "chest")


def cli(live: Live, config_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `medtune` command as a user runs it, pointed at the live server by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")}
    env |= {"MEDTUNE_URL": live.url, "MEDTUNE_API_KEY": live.key, "MEDTUNE_CONFIG_DIR": str(config_dir),
            "COLUMNS": "200"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "medtune.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def cli_json(live: Live, config_dir: Path, *args: str) -> Any:
    done = cli(live, config_dir, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_catalog_lists_tiny_models(client: medtune.Client) -> None:
    entries = {e.name: e for e in client.base_models.list()}
    assert {"test_vit", "test_resnet", "vit_base_patch16_224"} <= set(entries)
    assert entries["test_vit"].architecture == "test_vit"


def test_split_then_job_history(
    client: medtune.Client, dataset: Dataset, split: Split, trained: Job, live: Live, tmp_path: Path
) -> None:
    assert split.seed == 7 and split.sha256 and set(split.counts) == {"train", "val", "test"}
    assert client.splits.get(dataset, split).sha256 == split.sha256
    manifest = client.splits.manifest(dataset, split)
    assert len(manifest.strip().splitlines()) == 17  # header + one row per image

    assert trained.hyperparameters and trained.hyperparameters["epochs"] == 2
    assert trained.best and trained.best.metric == "val_auroc" and trained.result

    events = list(client.jobs.events(trained, limit=3))  # newest first, walked across pages
    newest, oldest = events[0].created_at, events[-1].created_at
    assert len(events) >= 4 and newest and oldest and newest >= oldest
    epochs = [e.data["epoch"] for e in events if e.type == "metrics" and e.data and "epoch" in e.data]
    assert sorted(epochs) == [1, 2]

    streamed = list(client.jobs.stream(trained))  # a finished job: the whole history, then the end
    assert [e.id for e in streamed] == [e.id for e in reversed(events)]

    checkpoints = client.jobs.checkpoints(trained)
    assert [c.epoch for c in checkpoints] == [1, 2] and sum(c.is_best for c in checkpoints) == 1
    assert trained.id in [j.id for j in client.jobs.list(limit=50)]

    watch = cli(live, tmp_path, "jobs", "watch", trained.id, "--json")
    assert watch.returncode == 0, watch.stderr
    assert json.loads(watch.stdout)["status"] == "succeeded"


def test_promote_alias_predict_and_batch(
    client: medtune.Client,
    version: ModelVersion,
    trained: Job,
    dataset: Dataset,
    split: Split,
    dataset_files: tuple[list[Path], Path],
    live: Live,
) -> None:
    assert version.ref == f"chest:{version.version}" and version.status == "ready"
    assert version.job_id == trained.id and version.test_auroc is not None
    moved = client.models.set_alias("chest", "champion", version.version)
    assert moved.aliases["champion"] == version.version
    assert client.models.get("chest").serving is not None
    assert "chest" in [m.name for m in client.models.list()]

    paths = dataset_files[0]
    one = client.models.predict("chest", paths[0])
    p = one.predictions[0].probabilities["finding"]
    assert one.model == "chest" and one.version == version.version and 0.0 <= p <= 1.0
    same = client.models.predict("chest@champion", paths[0].read_bytes(), as_json=True)
    assert same.predictions[0].probabilities["finding"] == pytest.approx(p, abs=1e-5)
    many = client.models.predict(f"chest:{version.version}", paths[:3])
    assert len(many.predictions) == 3

    batch = client.models.batch_predict("chest@champion", dataset, split)  # the test part by default
    assert batch.status == "queued" and batch.split == "test"
    done = client.models.wait_batch(batch, timeout=180, poll_interval=0.5)
    assert done.status == "succeeded", (done.error, live.worker_log())
    assert done.count == split.counts["test"]["images"] and done.metrics is not None
    assert done.output_key


def test_archived_version_stops_serving(client: medtune.Client, trained: Job, dataset_files: Any) -> None:
    v = client.models.promote(trained, "retired", checkpoint=1)
    assert v.epoch == 1
    archived = client.models.archive("retired", v.version)
    assert archived.status == "archived" and archived.archived_at is not None
    with pytest.raises(errors.GoneError) as gone:
        client.models.predict(v.ref, dataset_files[0][0])
    assert gone.value.status_code == 410 and "archived" in gone.value.message
    assert client.models.version("retired", v.version).status == "archived"  # the record stays


def test_cli_models_alias_and_predict(
    live: Live, version: ModelVersion, dataset_files: tuple[list[Path], Path], tmp_path: Path
) -> None:
    image = str(dataset_files[0][1])
    moved = cli_json(live, tmp_path, "models", "alias", "chest", "staging", str(version.version))
    assert moved["name"] == "chest" and moved["aliases"]["staging"] == version.version
    plain = cli(live, tmp_path, "models", "alias", "chest", "staging", str(version.version))
    assert plain.returncode == 0 and plain.stdout.strip() == f"chest@staging -> {version.version}"

    predicted = cli_json(live, tmp_path, "models", "predict", "chest@staging", image)
    assert predicted["model"] == "chest" and predicted["version"] == version.version
    probability = predicted["predictions"][0]["probabilities"]["finding"]
    assert 0.0 <= probability <= 1.0
    table = cli(live, tmp_path, "models", "predict", "chest@staging", image)
    assert table.returncode == 0 and "finding" in table.stdout and f"{probability:.3f}" in table.stdout

    listed = {m["name"]: m for m in cli_json(live, tmp_path, "models", "list")}
    assert listed["chest"]["aliases"]["staging"] == version.version

    # Exit codes: 1 refused by the server (or a missing file), 2 bad usage; stdout stays empty.
    missing = cli(live, tmp_path, "models", "alias", "chest", "staging", "99", "--json")
    assert missing.returncode == 1 and "not_found_error" in missing.stderr and missing.stdout == ""
    unknown = cli(live, tmp_path, "models", "predict", "nope:1", image, "--json")
    assert unknown.returncode == 1 and "not_found_error" in unknown.stderr and unknown.stdout == ""
    no_file = cli(live, tmp_path, "models", "predict", "chest", str(tmp_path / "absent.dcm"))
    assert no_file.returncode == 1 and "absent.dcm" in no_file.stderr
    assert cli(live, tmp_path, "models", "alias", "chest", "staging", "one").returncode == 2
    assert cli(live, tmp_path, "models", "predict", "chest").returncode == 2


def test_cancel_then_resume(
    client: medtune.Client, dataset: Dataset, split: Split, live: Live, tmp_path: Path
) -> None:
    job = client.jobs.create(dataset, "test_vit", split=split, weights="random", hyperparameters=ONE_EPOCH)
    client.jobs.cancel(job)
    cancelled = client.jobs.wait(job, timeout=120, poll_interval=0.5, progress=False)
    assert cancelled.status == "cancelled"
    assert job.id in [j.id for j in client.jobs.list(status="cancelled")]
    assert job.id not in [j.id for j in client.jobs.list(status="succeeded")]
    assert {j.status for j in client.jobs.list(status="cancelled")} == {"cancelled"}
    with pytest.raises(errors.InvalidRequestError) as unknown:
        client.jobs.list(status="done")
    assert unknown.value.status_code == 422
    watch = cli(live, tmp_path, "jobs", "watch", job.id)
    assert watch.returncode == 1 and "cancelled" in watch.stdout

    resumed = client.jobs.resume(job)
    assert resumed.id == job.id and resumed.status in ("validating_files", "queued") and resumed.error is None
    final = client.jobs.wait(job, timeout=300, poll_interval=1, progress=False)
    assert final.status == "succeeded", (final.error, live.worker_log())
    messages = [e.message for e in client.jobs.events(job)]
    assert any("resumed" in m for m in messages)

    with pytest.raises(errors.ConflictError) as again:
        client.jobs.resume(job)
    assert again.value.status_code == 409 and again.value.param == "job_id"
    refused = cli(live, tmp_path, "jobs", "resume", job.id, "--json")
    assert refused.returncode == 1 and "conflict_error" in refused.stderr and refused.stdout == ""


def test_seed_sweep_on_registered_weights(
    client: medtune.Client, dataset: Dataset, live: Live, tmp_path: Path
) -> None:
    import timm
    from safetensors.torch import save_file

    checkpoint = tmp_path / "my-resnet.safetensors"
    backbone = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(checkpoint))
    entry = client.base_models.register("my-resnet", "test_resnet", checkpoint)
    assert entry.architecture == "test_resnet" and entry.weights.startswith("bm_") and entry.weights_available
    assert entry.size_bytes == checkpoint.stat().st_size and entry.sha256
    assert entry.weights in [e.weights for e in client.base_models.list()]
    with pytest.raises(errors.ConflictError):
        client.base_models.register("my-resnet", "test_resnet", checkpoint)

    group = client.job_groups.create(dataset, "test_resnet", [11, 12], weights=entry.weights,
                                     hyperparameters=ONE_EPOCH, fractions={"train": 0.5, "val": 0.25,
                                     "test": 0.25})  # fmt: skip
    assert group.split_seeds == [11, 12] and len(group.jobs) == 2 and group.status == "running"
    done = client.job_groups.wait(group, timeout=420, poll_interval=1)
    assert done.status == "succeeded", ([j.error for j in done.jobs], live.worker_log())
    assert {j.split["seed"] for j in done.jobs if j.split} == {11, 12}
    assert all(j.group_id == group.id and j.weights_sha256 == entry.sha256 for j in done.jobs)
    assert group.id in [g.id for g in client.job_groups.list()]

    aurocs = [j.result["macro"]["auroc"] for j in done.jobs if j.result]
    summary = done.metric("test_auroc")
    assert summary["n"] == 2 == done.summary["n_succeeded"]
    assert summary["mean"] == pytest.approx(statistics.mean(aurocs))
    assert summary["sd"] == pytest.approx(statistics.stdev(aurocs))
    low, high = summary["ci95"]
    assert low <= summary["mean"] <= high  # t-based: wide with two seeds, but it brackets the mean


def test_async_client_jobs_and_models(
    live: Live, trained: Job, version: ModelVersion, dataset: Dataset, dataset_files: tuple[list[Path], Path]
) -> None:
    image = dataset_files[0][2]

    async def scenario() -> dict[str, Any]:
        async with medtune.AsyncClient(live.url, live.key) as c:
            job = await c.jobs.get(trained.id)
            listed = [j.id async for j in await c.jobs.list(limit=1)]
            events = [e async for e in await c.jobs.events(job, limit=2)]
            streamed = [e async for e in c.jobs.stream(job)]
            checkpoints = await c.jobs.checkpoints(job)
            seen: list[Job] = []
            waited = await c.jobs.wait(job, timeout=10, progress=False, on_update=seen.append)
            assert [j.status for j in seen] == ["succeeded"]
            with pytest.raises(errors.NotFoundError):
                await c.jobs.get("ftjob_missing")
            models = [m.name async for m in await c.models.list()]
            model = await c.models.get(version.ref)
            versions = await c.models.versions("chest")
            one = await c.models.version("chest", version.version)
            predicted = await c.models.predict(version.ref, image)
            as_json = await c.models.predict(version.ref, [image, image], as_json=True)
            return {"job": job, "listed": listed, "events": events, "streamed": streamed,
                    "checkpoints": checkpoints, "waited": waited, "models": models, "model": model,
                    "versions": versions, "one": one, "predicted": predicted, "as_json": as_json}  # fmt: skip

    r = asyncio.run(scenario())
    assert r["job"].status == "succeeded" == r["waited"].status
    assert trained.id in r["listed"]  # pages of one, walked
    assert len(r["events"]) == len(r["streamed"]) and {e.id for e in r["events"]} == {
        e.id for e in r["streamed"]
    }
    assert [c.epoch for c in r["checkpoints"]] == [1, 2]
    assert "chest" in r["models"] and r["model"].serving and r["model"].serving.version == version.version
    assert version.version in [v.version for v in r["versions"]] and r["one"].ref == version.ref
    p = r["predicted"].predictions[0].probabilities["finding"]
    assert [x.probabilities["finding"] for x in r["as_json"].predictions] == pytest.approx([p, p], abs=1e-5)

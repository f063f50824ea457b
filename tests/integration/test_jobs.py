"""Fine-tuning jobs end to end: the API, a real Celery worker process, PostgreSQL, MLflow (sqlite) and data
ingested through the ingestion service (PNG images + manifest -> pixel cache), on tiny models."""

from __future__ import annotations

import io
import json
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import text

from platform_core.config import Settings
from platform_core.db.session import make_engine, make_sessionmaker
from tests.services import WorkerProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

N_IMAGES = 60
FAST = {
    "epochs": 3,
    "batch_size": 8,
    "learning_rate": 0.003,
    "image_size": 32,
    "augmentation": "none",
    "warmup_epochs": 0,
    "early_stopping_patience": None,
}


@dataclass
class Env:
    settings: Settings
    env: dict[str, str]
    client: Any
    headers: dict[str, str]
    project_id: str
    dataset_id: str
    tmp: Path


def _png(label: int, rng: np.random.Generator) -> bytes:
    """A learnable image: positives carry a bright block in the upper half, negatives in the lower."""
    img = rng.integers(0, 60, (64, 64)).astype(np.uint8)
    top = 6 if label else 38
    img[top : top + 18, 16:48] = 230
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _ingest(settings: Settings, project_id: str) -> str:
    """A binary dataset written as ingestion leaves it: studies, labels by key HMAC, accepted images with
    their 16-bit pixel cache in the object store (the ingestion service itself was mid-change here)."""
    import hashlib

    from platform_core.datasets.models import Dataset, Image, Study, StudyLabel
    from platform_core.dicom import cache
    from platform_core.ids import new_id
    from platform_core.storage import open_store

    store = open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    rng = np.random.default_rng(0)
    with sessions() as s:
        dataset = Dataset(
            id=new_id("ds"),
            project_id=project_id,
            name=f"toy-{secrets.token_hex(3)}",
            task="binary",
            labels=["finding"],
            options={"cache_size": 64},
            duplicate_count=0,
        )
        s.add(dataset)
        s.flush()
        for i in range(N_IMAGES):
            label = i % 2
            key_hmac = hashlib.sha256(f"study-{dataset.id}-{i}".encode()).hexdigest()
            study = Study(
                id=new_id("st"),
                dataset_id=dataset.id,
                study_key_hmac=key_hmac,
                study_pseudonym=f"2.25.{i}",
                patient_pseudonym=f"pat-{i}",
            )
            s.add(study)
            s.add(
                StudyLabel(
                    id=new_id("lb"), dataset_id=dataset.id, key_hmac=key_hmac, labels={"finding": label}
                )
            )
            with PILImage.open(io.BytesIO(_png(label, rng))) as im:
                pixels = np.asarray(im).astype(np.uint16) * 257
            image_id = new_id("img")
            cache_key = f"datasets/{dataset.id}/cache/{image_id}.png"
            store.put_bytes(cache_key, cache.encode(pixels), cache.CONTENT_TYPE)
            s.flush()
            s.add(
                Image(
                    id=image_id,
                    dataset_id=dataset.id,
                    study_id=study.id,
                    study_pseudonym=study.study_pseudonym,
                    patient_pseudonym=study.patient_pseudonym,
                    sop_instance_uid_pseudonym=f"2.25.{1000 + i}",
                    source="png",
                    status="accepted",
                    cache_key=cache_key,
                    pixel_sha256=cache.content_hash(pixels),
                    rows=64,
                    columns=64,
                )
            )
        s.commit()
        return dataset.id


def _make_env(tmp: Path, pg_url: str, broker: str, extra: dict[str, str] | None = None) -> Iterator[Env]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from platform_core.auth import service as auth

    data = tmp / "data"
    env = {
        "MEDTUNE_DATA_DIR": str(data),
        "MEDTUNE_DATABASE_URL": pg_url,
        "MEDTUNE_OBJECT_STORE_URL": f"file://{tmp / 'objects'}",
        "MEDTUNE_BROKER_URL": broker,
        "MEDTUNE_RESULT_BACKEND": f"db+sqlite:///{tmp / 'results.sqlite'}",
        "MEDTUNE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.sqlite'}",
        "MEDTUNE_MLFLOW_UI_URL": "http://mlflow.local",
        "MEDTUNE_DEID_SECRET": "jobs-test-" + secrets.token_hex(8),
        "HF_HUB_OFFLINE": "1",
        **(extra or {}),
    }
    settings = Settings(
        data_dir=data,
        database_url=pg_url,
        object_store_url=env["MEDTUNE_OBJECT_STORE_URL"],
        broker_url=broker,
        result_backend=env["MEDTUNE_RESULT_BACKEND"],
        mlflow_tracking_uri=env["MEDTUNE_MLFLOW_TRACKING_URI"],
        deid_secret=env["MEDTUNE_DEID_SECRET"],
    )
    sessions = make_sessionmaker(make_engine(pg_url))
    with sessions() as s:
        project = auth.create_project(s, f"jobs-{secrets.token_hex(4)}")
        _key, raw = auth.create_key(s, project)
        s.commit()
        project_id = project.id
    dataset_id = _ingest(settings, project_id)
    with TestClient(create_app(settings)) as client:
        yield Env(settings, env, client, {"Authorization": f"Bearer {raw}"}, project_id, dataset_id, tmp)


@pytest.fixture(scope="module")
def fs_env(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Env]:
    yield from _make_env(tmp_path_factory.mktemp("jobs-fs"), pg_url, "filesystem://")


@pytest.fixture(scope="module")
def worker(fs_env: Env) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(fs_env.env, fs_env.tmp / "worker.log").start()
    yield proc
    proc.stop()


def _create(env: Env, **fields: Any) -> dict[str, Any]:
    body = {
        "dataset_id": env.dataset_id,
        "split": {"seed": 1},
        "base_model": "test_resnet",
        "weights": "random",
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}},
        "hyperparameters": dict(FAST),
        **fields,
    }
    r = env.client.post("/v1/fine-tuning/jobs", json=body, headers=env.headers)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


def _get(env: Env, job_id: str) -> dict[str, Any]:
    r = env.client.get(f"/v1/fine-tuning/jobs/{job_id}", headers=env.headers)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def _wait(
    env: Env, job_id: str, statuses: tuple[str, ...], worker: WorkerProcess, timeout: float = 180
) -> dict:
    try:
        return wait_for(
            lambda: (j := _get(env, job_id))["status"] in statuses and j,
            timeout,
            0.5,
            what=f"job {job_id} to reach {statuses}",
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\nworker log tail:\n{worker.output()[-5000:]}") from None


def test_job_succeeds_learns_and_logs_each_epoch_to_mlflow(fs_env: Env, worker: WorkerProcess) -> None:
    from mlflow.tracking import MlflowClient

    job = _create(fs_env, suffix="toy", hyperparameters={**FAST, "class_weighting": "auto"})
    assert job["status"] == "validating_files"
    done = _wait(fs_env, job["id"], ("succeeded", "failed"), worker)
    assert done["status"] == "succeeded", done["error"]
    hp = done["hyperparameters"]
    assert "auto" not in hp.values() and hp["class_weighting"] is False and hp["weight_decay"] == 0.01
    assert done["split"]["sha256"] and done["split"]["seed"] == 1 and done["dataset_version"]
    assert done["result"]["macro"]["auroc"] >= 0.8  # the blocks are easy: chance would be 0.5
    assert done["result"]["ci95"]["n_resamples"] == 1000 and done["best"]["metric"] == "val_auroc"
    assert done["mlflow_url"].startswith("http://mlflow.local/#/experiments/")

    run = MlflowClient(fs_env.settings.mlflow_tracking_uri).get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["medtune.split_sha256"] == done["split"]["sha256"]
    client = MlflowClient(fs_env.settings.mlflow_tracking_uri)
    for metric in (
        "train_loss",
        "val_loss",
        "val_auroc",
        "val_auprc",
        "val_sensitivity",
        "val_specificity",
        "val_f1",
        "val_accuracy",
    ):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(m.step for m in history) == [1, 2, 3], metric
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "model_card.md", "roc.png", "pr.png"} <= names

    ckpts = fs_env.client.get(f"/v1/fine-tuning/jobs/{job['id']}/checkpoints", headers=fs_env.headers).json()
    assert [c["epoch"] for c in ckpts["data"]] == [1, 2, 3] and sum(c["is_best"] for c in ckpts["data"]) == 1
    events = fs_env.client.get(
        f"/v1/fine-tuning/jobs/{job['id']}/events?limit=200", headers=fs_env.headers
    ).json()
    assert any(e["type"] == "metrics" and e["data"].get("epoch") == 3 for e in events["data"])
    with fs_env.client.stream(
        "GET", f"/v1/fine-tuning/jobs/{job['id']}/events/stream", headers=fs_env.headers
    ) as r:
        body = "".join(r.iter_text())
    assert "event: metrics" in body and 'event: end\ndata: {"status": "succeeded"}' in body
    store_root = fs_env.tmp / "objects" / "jobs" / job["id"]
    config = json.loads((store_root / "adapter" / "adapter_config.json").read_text())
    assert config["base_model"] == "test_resnet" and config["labels"] == ["finding"]


def test_weights_unavailable_fail_in_validation_with_how_to_register(
    fs_env: Env, worker: WorkerProcess
) -> None:
    job = _create(fs_env, weights="pretrained")
    done = _wait(fs_env, job["id"], ("failed", "succeeded"), worker, timeout=60)
    assert done["status"] == "failed" and done["started_at"] is None
    assert done["error"]["code"] == "weights_unavailable" and done["error"]["param"] == "weights"
    assert "POST /v1/base-models" in done["error"]["message"] and "Traceback" not in done["error"]["message"]


def test_cancel_a_running_job_and_resume_it(fs_env: Env, worker: WorkerProcess) -> None:
    job = _create(fs_env, hyperparameters={**FAST, "epochs": 40})
    _wait(fs_env, job["id"], ("running",), worker, timeout=120)
    wait_for(
        lambda: fs_env.client.get(
            f"/v1/fine-tuning/jobs/{job['id']}/checkpoints", headers=fs_env.headers
        ).json()["data"],
        120,
        0.5,
        what="a checkpoint",
    )
    r = fs_env.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs_env.headers)
    assert r.status_code == 200
    done = _wait(fs_env, job["id"], ("cancelled",), worker, timeout=60)
    kept = fs_env.client.get(f"/v1/fine-tuning/jobs/{job['id']}/checkpoints", headers=fs_env.headers).json()[
        "data"
    ]
    assert kept and done["progress"]["epoch"] < 40
    r = fs_env.client.post(f"/v1/fine-tuning/jobs/{job['id']}/resume", headers=fs_env.headers)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    _wait(fs_env, job["id"], ("running",), worker, timeout=60)
    fs_env.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs_env.headers)
    final = _wait(fs_env, job["id"], ("cancelled",), worker, timeout=60)
    assert final["attempts"] == 2
    events = fs_env.client.get(
        f"/v1/fine-tuning/jobs/{job['id']}/events?limit=200", headers=fs_env.headers
    ).json()
    assert any(
        e["message"].startswith(f"resuming from the checkpoint of epoch {kept[-1]['epoch']}")
        for e in events["data"]
    )


def test_a_cancelled_queued_job_never_starts(fs_env: Env, worker: WorkerProcess) -> None:
    job = _create(fs_env)
    r = fs_env.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs_env.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    time.sleep(3)
    after = _get(fs_env, job["id"])
    assert after["status"] == "cancelled" and after["started_at"] is None and after["attempts"] == 0


def test_early_stopping(fs_env: Env, worker: WorkerProcess) -> None:
    hp = {**FAST, "epochs": 6, "learning_rate": 0.0, "early_stopping_patience": 1}
    done = _wait(
        fs_env,
        _create(fs_env, hyperparameters=hp, checkpoint_metric="val_loss")["id"],
        ("succeeded", "failed"),
        worker,
    )
    assert done["status"] == "succeeded" and done["best"]["epoch"] == 1
    assert done["progress"]["epoch"] == 2


def test_group_reports_mean_sd_and_ci_over_seeds(fs_env: Env, worker: WorkerProcess) -> None:
    body = {
        "dataset_id": fs_env.dataset_id,
        "base_model": "test_resnet",
        "weights": "random",
        "hyperparameters": {**FAST, "epochs": 2},
        "split_seeds": [11, 12],
    }
    r = fs_env.client.post("/v1/fine-tuning/job-groups", json=body, headers=fs_env.headers)
    assert r.status_code == 201, r.text
    group = r.json()
    assert len(group["jobs"]) == 2

    def finished() -> dict[str, Any] | None:
        g = fs_env.client.get(f"/v1/fine-tuning/job-groups/{group['id']}", headers=fs_env.headers).json()
        return g if g["status"] != "running" else None

    done = wait_for(finished, 240, 1.0, what="the group")
    assert done["status"] == "succeeded", [j["error"] for j in done["jobs"]]
    auroc = done["summary"]["metrics"]["test_auroc"]
    assert (
        auroc["n"] == 2 and auroc["sd"] is not None and auroc["ci95"][0] <= auroc["mean"] <= auroc["ci95"][1]
    )
    assert {j["split"]["seed"] for j in done["jobs"]} == {11, 12}


def test_worker_killed_mid_run_resumes_from_its_checkpoint_on_redis(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    db = int(secrets.randbelow(8)) + 8
    extra = {"MEDTUNE_BROKER_VISIBILITY_TIMEOUT_S": "4"}
    gen = _make_env(tmp_path, pg_url, f"{redis_url}/{db}", extra)
    env = next(gen)
    first = WorkerProcess(env.env, tmp_path / "w1.log").start()
    second = None
    try:
        job = _create(env, hyperparameters={**FAST, "epochs": 30})
        wait_for(
            lambda: env.client.get(
                f"/v1/fine-tuning/jobs/{job['id']}/checkpoints", headers=env.headers
            ).json()["data"],
            180,
            0.5,
            what="a checkpoint",
        )
        first.stop(signal.SIGKILL)
        epoch_at_kill = max(
            c["epoch"]
            for c in env.client.get(
                f"/v1/fine-tuning/jobs/{job['id']}/checkpoints", headers=env.headers
            ).json()["data"]
        )
        second = WorkerProcess(env.env, tmp_path / "w2.log").start()
        _wait(env, job["id"], ("running",), second)
        wait_for(lambda: _get(env, job["id"])["attempts"] == 2, 120, 0.5, what="the redelivered run")
        env.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=env.headers)
        _wait(env, job["id"], ("cancelled",), second, timeout=60)
        events = env.client.get(
            f"/v1/fine-tuning/jobs/{job['id']}/events?limit=200", headers=env.headers
        ).json()
        resumed = [
            e for e in events["data"] if e["message"].startswith("resuming from the checkpoint of epoch")
        ]
        assert resumed and int(resumed[0]["message"].rsplit(" ", 1)[1]) >= epoch_at_kill
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        gen.close()
        import redis

        redis.Redis.from_url(f"{redis_url}/{db}").flushdb()


def test_stale_heartbeat_requeues(fs_env: Env) -> None:
    from platform_core.training.jobs import service

    sessions = make_sessionmaker(make_engine(fs_env.settings.db_url))
    with sessions() as s:
        job = service.create_job(
            s,
            fs_env.project_id,
            service.JobCreate(dataset_id=fs_env.dataset_id, base_model="test_vit", weights="random"),
        )
        s.execute(
            text(
                "UPDATE fine_tuning_jobs SET status='running', heartbeat_at=now() - interval '1 hour' "
                "WHERE id=:id"
            ),
            {"id": job.id},
        )
        s.expire_all()
        assert job.id in service.requeue_stale(s, stale_after_s=60)
        s.refresh(job)
        assert job.status == "queued"
        s.rollback()


def test_auto_resolution_and_request_errors(fs_env: Env) -> None:
    from platform_core.training import catalog
    from platform_core.training.jobs.service import resolve_hyperparameters

    hp, method = resolve_hyperparameters(
        {"epochs": "auto", "batch_size": 16},
        {"type": "lora", "lora": {"r": "auto"}},
        catalog.get("test_vit"),
        400,
        [0.1],
    )
    assert hp["batch_size"] == 16 and hp["epochs"] == 10 and hp["image_size"] == 160 and hp["class_weighting"]
    assert method["lora"] == {"r": 8, "alpha": 16, "dropout": 0.1}
    r = fs_env.client.post(
        "/v1/fine-tuning/jobs",
        headers=fs_env.headers,
        json={"dataset_id": fs_env.dataset_id, "base_model": "nope"},
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "base_model"
    r = fs_env.client.post(
        "/v1/fine-tuning/jobs",
        headers=fs_env.headers,
        json={"dataset_id": "ds_missing", "base_model": "test_vit"},
    )
    assert r.status_code == 404
    listed = fs_env.client.get("/v1/base-models", headers=fs_env.headers).json()["data"]
    assert {"test_vit", "vit_base_patch16_224", "eva02_base_patch14_224"} <= {m["id"] for m in listed}

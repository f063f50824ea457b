"""Fine-tuning jobs end to end on really ingested data: synthetic DICOM radiographs uploaded through the
API (de-identified, filtered, pixel task run as the worker runs it), a labels CSV, a split from the
splits API; then jobs through the API and a real Celery worker process on the embedded filesystem
broker (one worker for the module) and on Redis (SIGKILL and redelivery), PostgreSQL, MLflow (sqlite),
on tiny models."""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from platform_core.artifacts import AdapterConfig
from platform_core.config import Settings
from platform_core.db.outbox import TaskMessage
from platform_core.db.session import make_engine, make_sessionmaker, unit_of_work
from tests.fixtures_dicom import radiograph, to_bytes, uid
from tests.services import WorkerProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

N_STUDIES = 64
FAST = {
    "epochs": 3,
    "batch_size": 8,
    "learning_rate": 0.003,
    "image_size": 64,
    "augmentation": "none",
    "warmup_epochs": 0,
    "early_stopping_patience": None,
}
METRICS = ("train_loss", "val_loss", "val_auroc", "val_auprc", "val_sensitivity", "val_specificity",
           "val_f1", "val_accuracy")  # fmt: skip
TERMINAL = ("succeeded", "failed", "cancelled")


# --- the data: DICOM radiographs through the real ingestion path -------------------------------------


def _pixels(label: int, rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """A 12-bit radiograph-like gradient with noise; positives carry a bright disc somewhere central."""
    y, x = np.mgrid[0:size, 0:size]
    img = (x + y) * (1200 / (2 * size)) + 300 + rng.normal(0, 120, (size, size))
    if label:
        cy, cx = rng.integers(50, size - 50, 2)
        img[(y - cy) ** 2 + (x - cx) ** 2 <= 26**2] = 3900
    return np.asarray(img.clip(0, 4095), dtype=np.uint16)


def _pixel_task(sessions: Any, store: Any, image_ids: tuple[str, ...], secret: str) -> dict[str, str]:
    """What worker.tasks.ingest.process_image does with one message: read, build caches, record."""
    from platform_core.datasets import ingest

    with unit_of_work(sessions) as s:
        pending = ingest.pending_pixels(s, image_ids)
    results = ingest.build_caches(store, pending.values(), secret=secret)
    with unit_of_work(sessions) as s:
        return ingest.record_pixels(s, results)


@dataclass
class Base:
    """What both brokers' stacks share: PostgreSQL, the object store, MLflow, one project, the data."""

    tmp: Path
    pg_url: str
    env: dict[str, str]
    headers: dict[str, str]
    project_id: str
    dataset_id: str = ""
    split: dict[str, Any] = field(default_factory=dict)

    def settings(self, broker: str, result_backend: str, data_dir: Path) -> Settings:
        return Settings(
            data_dir=data_dir,
            database_url=self.pg_url,
            object_store_url=self.env["MEDTUNE_OBJECT_STORE_URL"],
            broker_url=broker,
            result_backend=result_backend,
            mlflow_tracking_uri=self.env["MEDTUNE_MLFLOW_TRACKING_URI"],
            mlflow_ui_url=self.env["MEDTUNE_MLFLOW_UI_URL"],
            deid_secret=self.env["MEDTUNE_DEID_SECRET"],
        )

    @property
    def mlflow_uri(self) -> str:
        return self.env["MEDTUNE_MLFLOW_TRACKING_URI"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Base:
    from platform_core.auth import service as auth

    tmp = tmp_path_factory.mktemp("jobs")
    env = {
        "MEDTUNE_DATABASE_URL": pg_url,
        "MEDTUNE_OBJECT_STORE_URL": f"file://{tmp / 'objects'}",
        "MEDTUNE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.sqlite'}",
        "MEDTUNE_MLFLOW_UI_URL": "http://mlflow.local",
        "MEDTUNE_DEID_SECRET": "jobs-test-" + secrets.token_hex(16),
        "HF_HUB_OFFLINE": "1",
    }
    with make_sessionmaker(make_engine(pg_url))() as s:
        project = auth.create_project(s, f"jobs-{secrets.token_hex(4)}")
        _key, raw = auth.create_key(s, project)
        s.commit()
        return Base(tmp, pg_url, env, {"Authorization": f"Bearer {raw}"}, project.id)


def _ingest(base: Base) -> None:
    """Upload DICOM files and labels over REST, run the pixel tasks the upload queued, split over REST."""
    from fastapi.testclient import TestClient

    from api.app import build_state, create_app
    from platform_core.datasets.ingest import TASK
    from platform_core.storage import open_store

    settings = base.settings("memory://", "cache+memory://", base.tmp / "ingest")
    sent: list[TaskMessage] = []
    rng = np.random.default_rng(0)
    labels = [i % 2 for i in range(N_STUDIES)]
    files = [
        ("files", (f"s{i}.dcm", to_bytes(radiograph(patient=i + 1, modality=("CR", "DX")[i % 2],
                                                     pixels=_pixels(label, rng))), "application/dicom"))
        for i, label in enumerate(labels)
    ]  # fmt: skip
    labels_csv = "StudyInstanceUID,finding\n" + "".join(
        f"{uid(i + 1, 1)},{v}\n" for i, v in enumerate(labels)
    )
    h = base.headers
    with TestClient(create_app(state=build_state(settings, dispatch=sent.append))) as client:
        options = {"min_image_size": 64, "cache_size": 96}
        body = {"name": "cxr-blobs", "task": "binary", "labels": ["finding"], "options": options}
        r = client.post("/v1/datasets", headers=h, json=body)
        assert r.status_code == 201, r.text
        base.dataset_id = r.json()["id"]
        r = client.post(f"/v1/datasets/{base.dataset_id}/files", headers=h, files=files)
        assert r.status_code == 202, r.text
        assert [o["outcome"] for o in r.json()["data"]] == ["queued"] * N_STUDIES
        r = client.post(f"/v1/datasets/{base.dataset_id}/labels", headers=h,
                        files={"file": ("labels.csv", labels_csv.encode(), "text/csv")})  # fmt: skip
        assert r.status_code == 200, r.text
        sessions = make_sessionmaker(make_engine(base.pg_url))
        store = open_store(settings.object_store_url or "", settings)
        pixel_messages = [m for m in sent if m.name == TASK.name]
        assert pixel_messages and all(m.queue == "ingest" for m in pixel_messages)
        secret = settings.resolved_secret()
        for m in pixel_messages:
            assert set(_pixel_task(sessions, store, m.args, secret).values()) == {"accepted"}
        counts = client.get(f"/v1/datasets/{base.dataset_id}", headers=h).json()["counts"]
        assert counts["accepted"] == N_STUDIES and counts["labels"]["finding"]["positives"] == N_STUDIES // 2
        r = client.post(f"/v1/datasets/{base.dataset_id}/splits", headers=h, json={"seed": 1})
        assert r.status_code == 201, r.text
        base.split = r.json()


# --- one stack per broker --------------------------------------------------------------------------


@dataclass
class Stack:
    base: Base
    settings: Settings
    env: dict[str, str]
    client: Any
    worker: WorkerProcess | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.base.headers


def _stack_env(base: Base, name: str, broker: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **base.env,
        "MEDTUNE_DATA_DIR": str(base.tmp / name),
        "MEDTUNE_BROKER_URL": broker,
        "MEDTUNE_RESULT_BACKEND": f"db+sqlite:///{base.tmp / f'{name}-results.sqlite'}",
        **(extra or {}),
    }


@pytest.fixture(scope="module")
def data(base: Base) -> Base:
    _ingest(base)
    return base


@pytest.fixture(scope="module")
def fs(base: Base, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The embedded broker's stack and one worker for the module's tests; the worker boots (imports
    torch, timm, ...) while the data are ingested."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    env = _stack_env(base, "fs", "filesystem://")
    worker = WorkerProcess(env, base.tmp / "fs-worker.log").start()
    try:
        request.getfixturevalue("data")
        settings = base.settings("filesystem://", env["MEDTUNE_RESULT_BACKEND"], base.tmp / "fs")
        with TestClient(create_app(settings)) as client:
            yield Stack(base, settings, env, client, worker)
    finally:
        worker.stop()


@pytest.fixture(autouse=True)
def _worker_left_idle(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share the module's worker: jobs a test left unfinished are cancelled and waited for."""
    if "fs" not in request.fixturenames:
        yield
        return
    stack: Stack = request.getfixturevalue("fs")
    sessions = make_sessionmaker(make_engine(stack.base.pg_url))
    with sessions() as s:
        started = s.execute(text("SELECT now()")).scalar_one()
    yield
    with unit_of_work(sessions) as s:
        left = s.execute(
            text("UPDATE fine_tuning_jobs SET cancel_requested = true WHERE project_id = :p "
                 "AND created_at >= :t AND status NOT IN ('succeeded', 'failed', 'cancelled') RETURNING id"),
            {"p": stack.base.project_id, "t": started},
        ).scalars().all()  # fmt: skip
    for job_id in left:
        _wait(stack, job_id, TERMINAL, timeout=120)


# --- helpers -----------------------------------------------------------------------------------------


def _create(stack: Stack, **fields: Any) -> dict[str, Any]:
    body = {
        "dataset_id": stack.base.dataset_id,
        "split_id": stack.base.split["id"],
        "base_model": "test_resnet",
        "weights": "random",
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}},
        "hyperparameters": dict(FAST),
        **fields,
    }
    r = stack.client.post("/v1/fine-tuning/jobs", json=body, headers=stack.headers)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()
    return job


def _get(stack: Stack, job_id: str, what: str = "") -> dict[str, Any]:
    r = stack.client.get(f"/v1/fine-tuning/jobs/{job_id}{what}", headers=stack.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _wait(stack: Stack, job_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    try:
        job: dict[str, Any] = wait_for(
            lambda: (j := _get(stack, job_id))["status"] in statuses and j,
            timeout,
            0.25,
            what=f"job {job_id} to reach {statuses}",
        )
        return job
    except TimeoutError as exc:
        tail = stack.worker.output()[-5000:] if stack.worker else ""
        raise TimeoutError(f"{exc}\nworker log tail:\n{tail}") from None


def _checkpoints(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = _get(stack, job_id, "/checkpoints")["data"]
    return data


def _messages(stack: Stack, job_id: str) -> list[str]:
    return [e["message"] for e in _get(stack, job_id, "/events?limit=200")["data"]]


def _mlflow_steps(base: Base, run_id: str) -> dict[str, list[int]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(base.mlflow_uri)
    return {m: sorted(x.step for x in client.get_metric_history(run_id, m)) for m in METRICS}


# --- on the embedded (filesystem) broker -----------------------------------------------------------


def test_job_succeeds_learns_and_logs_each_epoch_to_mlflow(fs: Stack) -> None:
    from mlflow.tracking import MlflowClient

    hp = {**FAST, "weight_decay": "auto", "class_weighting": "auto"}
    # test_vit: under LoRA a random-weight ResNet's BatchNorm running statistics (which keep adapting, as
    # they should for pretrained weights meeting radiographs) lag its batch statistics after 15 steps.
    lora = {"type": "lora", "lora": {"r": "auto"}}
    job = _create(fs, base_model="test_vit", suffix="blobs", hyperparameters=hp, method=lora)
    assert job["status"] == "validating_files"
    done = _wait(fs, job["id"], TERMINAL)
    assert done["status"] == "succeeded", done["error"]
    hp_done, lora = done["hyperparameters"], done["method"]["lora"]
    assert "auto" not in hp_done.values() and "auto" not in lora.values()
    assert hp_done["class_weighting"] is False and hp_done["weight_decay"] == 0.01 and lora["r"] == 8
    assert done["split"] == {"id": fs.base.split["id"], "sha256": fs.base.split["sha256"], "seed": 1}
    assert done["dataset_version"] == fs.base.split["dataset_version"]
    assert done["result"]["n_test"] == fs.base.split["counts"]["test"]["images"]
    # Positives carry a bright disc: chance would be 0.5.
    assert done["result"]["macro"]["auroc"] >= 0.85, done["result"]["macro"]
    assert done["result"]["ci95"]["n_resamples"] == 1000 and done["best"]["metric"] == "val_auroc"
    assert done["mlflow_url"].startswith("http://mlflow.local/#/experiments/")

    client = MlflowClient(fs.base.mlflow_uri)
    run = client.get_run(done["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["medtune.split_sha256"] == done["split"]["sha256"]
    assert run.data.params["base_model"] == "test_vit" and run.data.params["image_size"] == "64"
    assert _mlflow_steps(fs.base, run.info.run_id) == {m: [1, 2, 3] for m in METRICS}
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "model_card.md", "roc.png", "pr.png"} <= names

    ckpts = _checkpoints(fs, job["id"])
    assert [c["epoch"] for c in ckpts] == [1, 2, 3] and sum(c["is_best"] for c in ckpts) == 1
    events = _get(fs, job["id"], "/events?limit=200")["data"]
    assert any(e["type"] == "metrics" and e["data"].get("epoch") == 3 for e in events)
    with fs.client.stream("GET", f"/v1/fine-tuning/jobs/{job['id']}/events/stream", headers=fs.headers) as r:
        body = "".join(r.iter_text())
    assert "event: metrics" in body and 'event: end\ndata: {"status": "succeeded"}' in body
    adapter = fs.base.tmp / "objects" / "jobs" / job["id"] / "adapter" / "adapter_config.json"
    config = AdapterConfig.from_json(json.loads(adapter.read_text()))
    assert config.base.backbone == "test_vit" and config.job_id == job["id"]
    assert config.epoch == done["best"]["epoch"] and set(config.thresholds) == set(config.labels)


def test_weights_unavailable_fail_in_validation_with_how_to_register(fs: Stack) -> None:
    done = _wait(fs, _create(fs, weights="pretrained")["id"], TERMINAL, timeout=60)
    assert done["status"] == "failed" and done["started_at"] is None
    assert done["error"]["code"] == "weights_unavailable" and done["error"]["param"] == "weights"
    assert "POST /v1/base-models" in done["error"]["message"] and "Traceback" not in done["error"]["message"]


def test_cancel_a_running_job_and_resume_it(fs: Stack) -> None:
    job = _create(fs, hyperparameters={**FAST, "epochs": 40})
    wait_for(lambda: _checkpoints(fs, job["id"]), 120, 0.2, what="a checkpoint")
    r = fs.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs.headers)
    assert r.status_code == 200
    done = _wait(fs, job["id"], ("cancelled",), timeout=60)
    kept = _checkpoints(fs, job["id"])
    assert kept and done["progress"]["epoch"] < 40 and done["finished_at"]
    r = fs.client.post(f"/v1/fine-tuning/jobs/{job['id']}/resume", headers=fs.headers)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    wait_for(lambda: _get(fs, job["id"])["attempts"] == 2, 60, 0.2, what="the resumed run")
    fs.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs.headers)
    final = _wait(fs, job["id"], ("cancelled",), timeout=60)
    assert final["attempts"] == 2
    assert f"resuming from the checkpoint of epoch {kept[-1]['epoch']}" in _messages(fs, job["id"])


def test_a_cancelled_job_never_starts(fs: Stack) -> None:
    job = _create(fs)
    r = fs.client.post(f"/v1/fine-tuning/jobs/{job['id']}/cancel", headers=fs.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # A job created after it fails in validation at once: once it has, the worker has seen the first.
    later = _wait(fs, _create(fs, weights="pretrained")["id"], TERMINAL, timeout=60)
    assert later["status"] == "failed"
    after = _get(fs, job["id"])
    assert after["status"] == "cancelled" and after["started_at"] is None and after["attempts"] == 0


def test_early_stopping(fs: Stack) -> None:
    hp = {**FAST, "epochs": 6, "learning_rate": 0.0, "early_stopping_patience": 1}
    done = _wait(fs, _create(fs, hyperparameters=hp, checkpoint_metric="val_loss")["id"], TERMINAL)
    assert done["status"] == "succeeded" and done["best"]["epoch"] == 1
    assert done["progress"]["epoch"] == 2 and len(_checkpoints(fs, done["id"])) == 2
    assert any(m.startswith("early stopping after epoch 2") for m in _messages(fs, done["id"]))


def test_group_reports_mean_sd_and_ci_over_seeds(fs: Stack) -> None:
    body = {
        "dataset_id": fs.base.dataset_id,
        "base_model": "test_vit",
        "weights": "random",
        "hyperparameters": {**FAST, "epochs": 2},
        "split_seeds": [11, 12],
    }
    r = fs.client.post("/v1/fine-tuning/job-groups", json=body, headers=fs.headers)
    assert r.status_code == 201, r.text
    group = r.json()
    assert len(group["jobs"]) == 2

    def finished() -> dict[str, Any] | None:
        g: dict[str, Any] = fs.client.get(
            f"/v1/fine-tuning/job-groups/{group['id']}", headers=fs.headers
        ).json()
        return g if g["status"] != "running" else None

    done = wait_for(finished, 180, 0.5, what="the group")
    assert done["status"] == "succeeded", [j["error"] for j in done["jobs"]]
    auroc = done["summary"]["metrics"]["test_auroc"]
    assert auroc["n"] == 2 and auroc["sd"] is not None
    values = [j["result"]["macro"]["auroc"] for j in done["jobs"]]
    assert auroc["mean"] == pytest.approx(np.mean(values)) and auroc["sd"] == pytest.approx(
        np.std(values, ddof=1)
    )
    assert auroc["ci95"][0] <= auroc["mean"] <= auroc["ci95"][1]
    assert {j["split"]["seed"] for j in done["jobs"]} == {11, 12}
    assert len({j["split"]["sha256"] for j in done["jobs"]}) == 2
    listed = fs.client.get("/v1/fine-tuning/job-groups?limit=100", headers=fs.headers).json()
    assert group["id"] in [g["id"] for g in listed["data"]]
    assert next(g for g in listed["data"] if g["id"] == group["id"])["summary"] == done["summary"]


# --- without a worker --------------------------------------------------------------------------------


def test_stale_heartbeat_requeues(fs: Stack) -> None:
    from platform_core.jobs import service
    from platform_core.jobs.schemas import JobCreate

    sessions = make_sessionmaker(make_engine(fs.base.pg_url))
    with sessions() as s:
        job = service.create_job(
            s,
            fs.base.project_id,
            JobCreate(dataset_id=fs.base.dataset_id, base_model="test_vit", weights="random"),
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


def test_auto_resolution_and_request_errors(fs: Stack) -> None:
    from platform_core.jobs.validation import resolve_hyperparameters
    from platform_core.training import catalog

    hp, method = resolve_hyperparameters(
        {"epochs": "auto", "batch_size": 16},
        {"type": "lora", "lora": {"r": "auto"}},
        catalog.get("test_vit"),
        400,
        [0.1],
    )
    assert hp["batch_size"] == 16 and hp["epochs"] == 10 and hp["image_size"] == 160 and hp["class_weighting"]
    assert hp["early_stopping_patience"] == 3 and hp["warmup_epochs"] == 1.0
    assert method["lora"] == {"r": 8, "alpha": 16, "dropout": 0.1}
    r = fs.client.post(
        "/v1/fine-tuning/jobs",
        headers=fs.headers,
        json={"dataset_id": fs.base.dataset_id, "base_model": "nope"},
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "base_model"
    r = fs.client.post(
        "/v1/fine-tuning/jobs",
        headers=fs.headers,
        json={"dataset_id": "ds_missing", "base_model": "test_vit"},
    )
    assert r.status_code == 404
    listed = fs.client.get("/v1/base-models", headers=fs.headers).json()["data"]
    assert {"test_vit", "vit_base_patch16_224", "eva02_base_patch14_224"} <= {m["id"] for m in listed}


# --- on Redis: a worker killed mid-run ---------------------------------------------------------------


def test_worker_killed_mid_run_resumes_from_its_checkpoint_on_redis(data: Base, redis_url: str) -> None:
    """The job succeeds on Redis after its first worker is SIGKILLed: the redelivered message resumes
    from the last checkpoint on the same split, and MLflow still holds one value per epoch."""
    import redis
    from fastapi.testclient import TestClient

    from api.app import create_app

    base = data
    broker = f"{redis_url}/{secrets.randbelow(8) + 8}"
    env = _stack_env(base, "redis", broker, {"MEDTUNE_BROKER_VISIBILITY_TIMEOUT_S": "4"})
    settings = base.settings(broker, env["MEDTUNE_RESULT_BACKEND"], base.tmp / "redis")
    first = WorkerProcess(env, base.tmp / "redis-w1.log").start()
    second: WorkerProcess | None = None
    try:
        with TestClient(create_app(settings)) as client:
            stack = Stack(base, settings, env, client, first)
            epochs = 5
            job = _create(stack, hyperparameters={**FAST, "epochs": epochs})
            wait_for(lambda: _checkpoints(stack, job["id"]), 120, 0.1, what="a checkpoint")
            first.stop(signal.SIGKILL)
            at_kill = max(c["epoch"] for c in _checkpoints(stack, job["id"]))
            assert at_kill < epochs
            second = stack.worker = WorkerProcess(env, base.tmp / "redis-w2.log").start()
            done = _wait(stack, job["id"], TERMINAL, timeout=120)
            assert done["status"] == "succeeded" and done["attempts"] == 2, done["error"]
            resumed = [m for m in _messages(stack, job["id"]) if m.startswith("resuming from the checkpoint")]
            assert resumed == [f"resuming from the checkpoint of epoch {at_kill}"]
            every_epoch = list(range(1, epochs + 1))
            assert [c["epoch"] for c in _checkpoints(stack, job["id"])] == every_epoch
            assert done["split"]["id"] == base.split["id"]
            assert _mlflow_steps(base, done["mlflow_run_id"]) == {m: every_epoch for m in METRICS}
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        redis.Redis.from_url(broker).flushdb()

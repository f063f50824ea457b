"""Registry and serving end to end: DICOM radiographs ingested, a tiny model trained by the real runner,
promoted over REST (MLflow Model Registry too), predictions from DICOM, PNG, base64 JSON and multipart,
serving tensor == training tensor, batch job == REST, alias gate, archive, and bad input."""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from platform_core.config import Settings
from platform_core.db.session import make_engine, make_sessionmaker
from tests.fixtures_dicom import learnable_pixels, radiograph, to_bytes, uid

pytestmark = [pytest.mark.services, pytest.mark.slow]

N = 40
FAST = {"epochs": 3, "batch_size": 8, "learning_rate": 0.003, "image_size": 32, "augmentation": "none",
        "warmup_epochs": 0, "early_stopping_patience": None}  # fmt: skip


@dataclass
class Env:
    settings: Settings
    client: Any
    headers: dict[str, str]
    project_id: str
    dataset_id: str
    job_id: str
    split_id: str
    files: dict[str, bytes]  # image id -> the original DICOM bytes
    sessions: Any
    store: Any


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Env]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from platform_core.auth import service as auth
    from platform_core.datasets import service as datasets
    from platform_core.datasets.ingest import process_image
    from platform_core.datasets.labels import import_labels
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
    from platform_core.jobs import validation as jobs
    from platform_core.jobs.run import run_job
    from platform_core.storage import open_store

    tmp: Path = tmp_path_factory.mktemp("registry")
    settings = Settings(
        data_dir=tmp / "data", database_url=pg_url, object_store_url=f"file://{tmp / 'objects'}",
        broker_url="memory://", result_backend="cache+memory://",
        mlflow_tracking_uri=f"sqlite:///{tmp / 'mlflow.sqlite'}", deid_secret="reg-" + secrets.token_hex(16),
        max_request_bytes=2 * 1024 * 1024,
    )  # fmt: skip
    store = open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(pg_url))
    rng = np.random.default_rng(0)
    originals = [to_bytes(radiograph(patient=100 + i, study=1, pixels=learnable_pixels(i % 2, rng)))
                 for i in range(N)]  # fmt: skip
    labels_csv = "StudyInstanceUID,finding\n" + "".join(f"{uid(100 + i, 1)},{i % 2}\n" for i in range(N))
    with sessions() as s:
        project = auth.create_project(s, f"reg-{secrets.token_hex(4)}")
        _key, raw = auth.create_key(s, project)
        body = DatasetCreate(name="cxr", task="binary", labels=["finding"],
                             options=DatasetOptions(min_image_size=32, cache_size=64))  # fmt: skip
        dataset = datasets.create_dataset(s, project.id, body)
        uploads = [datasets.Upload(f"f{i}.dcm", io.BytesIO(b)) for i, b in enumerate(originals)]
        out = datasets.ingest_uploads(s, store, settings, settings.resolved_secret(), dataset, uploads)
        import_labels(s, settings.resolved_secret(), dataset, labels_csv.encode())
        s.commit()
        files = {}
        for o in out:
            assert o.image_id is not None, o
            assert process_image(s, store, o.image_id, secret=settings.resolved_secret()) == "accepted"
            files[o.image_id] = originals[o.index]
        s.commit()
        project_id, dataset_id = project.id, dataset.id
    headers = {"Authorization": f"Bearer {raw}"}
    with TestClient(create_app(settings)) as client:
        job = client.post("/v1/fine-tuning/jobs", headers=headers, json={
            "dataset_id": dataset_id, "split": {"seed": 1}, "base_model": "test_resnet", "weights": "random",
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}}, "hyperparameters": FAST})  # fmt: skip
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        with sessions() as s:
            jobs.validate(s, job_id, store)
            s.commit()
        status = run_job(sessions, store, job_id)
        assert status == "succeeded"
        split_id = client.get(f"/v1/fine-tuning/jobs/{job_id}", headers=headers).json()["split"]["id"]
        yield Env(settings, client, headers, project_id, dataset_id, job_id, split_id, files, sessions, store)


def _promote(env: Env, name: str, checkpoint: Any = "best") -> dict[str, Any]:
    r = env.client.post("/v1/models", headers=env.headers,
                        json={"job_id": env.job_id, "name": name, "checkpoint": checkpoint})  # fmt: skip
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def _png(dicom: bytes) -> bytes:
    from platform_core.dicom import pixels
    from platform_core.dicom.read import parse

    img = pixels.decode(parse(dicom).dataset)
    buf = io.BytesIO()
    PILImage.fromarray((img / img.max() * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_promote_describes_itself_registers_in_mlflow_and_warms_up(env: Env) -> None:
    from mlflow.tracking import MlflowClient

    v = _promote(env, "cxr-a")
    assert v["version"] == 1 and v["ref"] == "cxr-a:1" and v["status"] == "ready"
    m = v["manifest"]
    assert m["base"]["backbone"] == "test_resnet" and m["base"]["weights"] == "random"
    assert m["labels"] == ["finding"] and set(m["thresholds"]) == {"finding"}
    assert m["thresholds_source"] == "validation"
    assert len(m["adapter"]["files"]["adapter_model.safetensors"]) == 64
    assert m["preprocessing"]["image_size"] == 32 and m["preprocessing"]["cache_size"] == 64
    assert (
        m["split"]["sha256"]
        and m["dataset"]["version_id"]
        and m["test_metrics"]["macro"]["auroc"] is not None
    )
    assert v["test_auroc"] == m["test_metrics"]["macro"]["auroc"]
    assert v["mlflow_version"] == "1"
    mv = MlflowClient(env.settings.mlflow_tracking_uri).get_model_version(f"{env.project_id}.cxr-a", "1")
    assert mv.tags["medtune.version_id"] == v["id"]
    got = env.client.get("/v1/models/cxr-a", headers=env.headers).json()
    assert got["serving"]["version"] == 1 and got["serving"]["loaded"] is True  # warmed on promotion
    assert env.client.get("/v1/models", headers=env.headers).json()["data"][0]["name"] == "cxr-a"


def test_predict_from_dicom_png_base64_and_multipart(env: Env) -> None:
    _promote(env, "cxr-b")
    image_id, dicom = next(iter(env.files.items()))
    dicom_headers = {**env.headers, "Content-Type": "application/dicom"}
    r = env.client.post("/v1/models/cxr-b/predict", headers=dicom_headers, content=dicom)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "cxr-b" and out["version"] == 1
    p = out["predictions"][0]
    assert 0 <= p["probabilities"]["finding"] <= 1
    assert p["predicted"]["finding"] == (p["probabilities"]["finding"] >= p["thresholds"]["finding"])
    instances = {"instances": [{"dicom_base64": base64.b64encode(dicom).decode()}]}
    b64 = env.client.post("/v1/models/cxr-b:1/predict", headers=env.headers, json=instances).json()
    assert b64["predictions"][0]["probabilities"] == p["probabilities"]
    png = _png(dicom)
    png_headers = {**env.headers, "Content-Type": "image/png"}
    r = env.client.post("/v1/models/cxr-b/predict?explain=true", headers=png_headers, content=png)
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["predictions"][0]["heatmap_png_base64"]).startswith(b"\x89PNG")
    files = [("files", ("a.dcm", dicom, "application/dicom")), ("files", ("b.png", png, "image/png"))]
    multi = env.client.post("/v1/models/cxr-b/predict", headers=env.headers, files=files).json()
    assert len(multi["predictions"]) == 2
    assert multi["predictions"][0]["probabilities"]["finding"] == pytest.approx(
        p["probabilities"]["finding"], abs=1e-6
    )


def _as_first_stored(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest as the first releases stored it: a flat method, no thresholds_source, and
    preprocessing without the header filters added since (their defaults are this dataset's)."""
    old = json.loads(json.dumps(manifest))
    lora = old["method"].pop("lora")
    old["method"].update(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"])
    del old["thresholds_source"]
    for key in ("modalities", "burned_in_annotation"):
        del old["preprocessing"][key]
    return old


def test_a_version_stored_in_the_old_manifest_format_still_serves(env: Env) -> None:
    from platform_core.inference import serving
    from platform_core.registry.models import ModelVersion

    v = _promote(env, "cxr-old")
    dicom = next(iter(env.files.values()))
    dicom_headers = {**env.headers, "Content-Type": "application/dicom"}
    new = env.client.post("/v1/models/cxr-old/predict", headers=dicom_headers, content=dicom).json()
    with env.sessions() as s:
        version = s.get(ModelVersion, v["id"])
        assert version is not None
        version.manifest = _as_first_stored(v["manifest"])
        s.commit()
    serving.evict(v["id"])  # loaded again, from the old manifest
    r = env.client.post("/v1/models/cxr-old/predict", headers=dicom_headers, content=dicom)
    assert r.status_code == 200, r.text
    old = r.json()["predictions"][0]
    assert old["probabilities"]["finding"] == pytest.approx(new["predictions"][0]["probabilities"]["finding"])
    assert old["thresholds"] == new["predictions"][0]["thresholds"]
    stored = env.client.get("/v1/models/cxr-old/versions/1", headers=env.headers).json()["manifest"]
    assert stored["method"]["r"] == 4  # the API answers the manifest as it is stored


def test_the_serving_tensor_equals_the_training_tensor(env: Env) -> None:
    from platform_core.artifacts import ModelManifest
    from platform_core.datasets.models import Image
    from platform_core.inference.preprocess import preprocess
    from platform_core.training.data import CacheDataset, Normalize, Sample, load_pixels

    v = _promote(env, "cxr-c")
    prep = ModelManifest.from_json(v["manifest"]).adapter.preprocessing
    for image_id, dicom in list(env.files.items())[:5]:
        with env.sessions() as s:
            image = s.get(Image, image_id)
            assert image is not None and image.cache_key
            key = image.cache_key
        pixels = load_pixels(env.store, [Sample(image_id, key, (0.0,))], prep.image_size)
        x, _ = CacheDataset(pixels, np.zeros((1, 1), dtype=np.float32))[0]
        trained = Normalize(prep.mean, prep.std)(x[None])[0]
        served, _grey = preprocess(dicom, prep)
        assert torch.equal(served, trained)


def test_batch_predictions_equal_rest_predictions_on_the_test_split(env: Env) -> None:
    from platform_core.inference import batch

    _promote(env, "cxr-d")
    body = {"dataset_id": env.dataset_id, "split_id": env.split_id, "split": "test"}
    r = env.client.post("/v1/models/cxr-d/batch-predictions", headers=env.headers, json=body)
    assert r.status_code == 202, r.text
    batch_id = r.json()["id"]
    assert r.json()["status"] == "queued"
    assert batch.run(env.sessions, env.store, env.settings, batch_id) == "succeeded"
    done = env.client.get(f"/v1/models/batch-predictions/{batch_id}", headers=env.headers).json()
    assert done["status"] == "succeeded" and done["count"] >= 1 and done["metrics"]["n"] == done["count"]
    rows = list(csv.DictReader(io.StringIO(env.store.get_bytes(done["output_key"]).decode())))
    assert len(rows) == done["count"]
    for row in rows:
        r = env.client.post("/v1/models/cxr-d/predict",
                            headers={**env.headers, "Content-Type": "application/dicom"},
                            content=env.files[row["image_id"]])  # fmt: skip
        rest = r.json()["predictions"][0]["probabilities"]["finding"]
        assert float(row["p_finding"]) == pytest.approx(rest, abs=1e-6)
    # The job's own test evaluation saw the same images; with float32 training, the same probabilities
    # too. Training on a CPU with bfloat16 ("auto" precision) evaluates under bf16 autocast while serving
    # computes in float32: probabilities ~1e-3 apart can swap near-tied ranks of a barely trained model.
    from platform_core.training.loop import resolve_precision

    job = env.client.get(f"/v1/fine-tuning/jobs/{env.job_id}", headers=env.headers).json()
    assert job["result"]["n_test"] == done["count"]
    if resolve_precision(torch.device("cpu")) == "fp32":
        assert done["metrics"]["macro"]["auroc"] == pytest.approx(job["result"]["macro"]["auroc"], abs=1e-6)


def _other_epoch(env: Env) -> int:
    r = env.client.get(f"/v1/fine-tuning/jobs/{env.job_id}/checkpoints", headers=env.headers)
    return int(next(c["epoch"] for c in r.json()["data"] if not c["is_best"]))


def test_a_non_best_epoch_is_evaluated_on_validation_before_it_serves(env: Env) -> None:
    from platform_core.inference.batch import split_rows
    from platform_core.registry import evaluate
    from platform_core.splits.models import Split
    from platform_core.training import metrics as M

    epoch = _other_epoch(env)
    v = _promote(env, "cxr-g", checkpoint=epoch)
    assert v["epoch"] == epoch and v["status"] == "evaluating" and v["test_auroc"] is None
    assert v["manifest"]["thresholds_source"] == "pending"
    dicom_headers = {**env.headers, "Content-Type": "application/dicom"}
    dicom = next(iter(env.files.values()))
    r = env.client.post("/v1/models/cxr-g:1/predict", headers=dicom_headers, content=dicom)
    assert r.status_code == 409 and "being evaluated" in r.json()["error"]["message"]
    assert (
        env.client.post("/v1/models/cxr-g/predict", headers=dicom_headers, content=dicom).status_code == 409
    )

    assert evaluate.run(env.sessions, env.store, env.settings, v["id"]) == "ready"
    assert evaluate.run(env.sessions, env.store, env.settings, v["id"]) == "ready"  # idempotent
    done = env.client.get("/v1/models/cxr-g:1", headers=env.headers).json()["serving"]
    m = done["manifest"]
    assert (
        done["status"] == "ready" and m["thresholds_source"] == "validation" and m["evaluation"]["n_val"] > 0
    )
    assert (
        m["test_metrics"]["macro"]["auroc"] is not None
        and done["test_auroc"] == m["test_metrics"]["macro"]["auroc"]
    )
    stored = json.loads(env.store.get_bytes(f"{m['adapter']['prefix']}/manifest.json"))
    assert stored["thresholds"] == m["thresholds"] and stored["thresholds_source"] == "validation"
    # The thresholds are Youden's J on the validation split, as served: recompute them over REST.
    with env.sessions() as s:
        split = s.get(Split, env.split_id)
        assert split is not None
        val = split_rows(s, split, "val")
    probs, ys = [], []
    for image_id, _key, labels in val:
        r = env.client.post("/v1/models/cxr-g/predict", headers=dicom_headers, content=env.files[image_id])
        assert r.status_code == 200, r.text
        pred = r.json()["predictions"][0]
        assert pred["thresholds"] == m["thresholds"]
        probs.append(pred["probabilities"]["finding"])
        ys.append(labels["finding"])
    want = M.youden_threshold(np.asarray(ys, dtype=np.float32), np.asarray(probs))
    assert m["thresholds"]["finding"] == pytest.approx(want, abs=1e-6)


def test_batch_predictions_and_evaluation_run_in_a_real_worker(env: Env) -> None:
    """The same tasks through a real `celery worker` process on the embedded filesystem broker: the API
    queues them after its commit, the worker runs them, the results equal the REST predictions."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.services import WorkerProcess, wait_for

    data_dir = env.settings.data_dir.parent / "worker-data"
    results = f"db+sqlite:///{data_dir.parent / 'worker-results.sqlite'}"
    settings = env.settings.model_copy(
        update={"broker_url": "filesystem://", "result_backend": results, "data_dir": data_dir}
    )
    worker_env = {
        "MEDTUNE_DATA_DIR": str(data_dir), "MEDTUNE_DATABASE_URL": settings.database_url or "",
        "MEDTUNE_OBJECT_STORE_URL": settings.object_store_url or "", "MEDTUNE_BROKER_URL": "filesystem://",
        "MEDTUNE_RESULT_BACKEND": results, "MEDTUNE_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri or "",
        "MEDTUNE_DEID_SECRET": settings.deid_secret or "", "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    worker = WorkerProcess(worker_env, data_dir.parent / "worker.log", queues="infer").start()
    try:
        with TestClient(create_app(settings)) as client:
            h = env.headers
            r = client.post("/v1/models", headers=h, json={"job_id": env.job_id, "name": "cxr-w"})
            assert r.status_code == 201, r.text
            body = {"dataset_id": env.dataset_id, "split_id": env.split_id, "split": "test"}
            r = client.post("/v1/models/cxr-w/batch-predictions", headers=h, json=body)
            assert r.status_code == 202, r.text
            url = f"/v1/models/batch-predictions/{r.json()['id']}"
            other = {"job_id": env.job_id, "name": "cxr-w", "checkpoint": _other_epoch(env)}
            r = client.post("/v1/models", headers=h, json=other)
            assert r.status_code == 201 and r.json()["status"] == "evaluating", r.text

            def finished() -> dict[str, Any] | None:
                out: dict[str, Any] = client.get(url, headers=h).json()
                return out if out["status"] in ("succeeded", "failed") else None

            done = wait_for(finished, 240, 0.5, "the batch job in the worker")
            assert done["status"] == "succeeded", (done, worker.output()[-3000:])
            evaluated = wait_for(
                lambda: client.get("/v1/models/cxr-w:2", headers=h).json()["serving"], 240, 0.5, "evaluation"
            )
            assert evaluated["manifest"]["thresholds_source"] == "validation", worker.output()[-3000:]
            rows = list(csv.DictReader(io.StringIO(env.store.get_bytes(done["output_key"]).decode())))
            assert len(rows) == done["count"] >= 1
            dicom_headers = {**h, "Content-Type": "application/dicom"}
            for row in rows:
                r = client.post("/v1/models/cxr-w:1/predict", headers=dicom_headers,
                                content=env.files[row["image_id"]])  # fmt: skip
                pred = r.json()["predictions"][0]
                assert float(row["p_finding"]) == pytest.approx(pred["probabilities"]["finding"], abs=1e-6)
                assert row["predicted_finding"] == str(int(pred["predicted"]["finding"]))
            # The worker's metrics are those of its CSV's probabilities (== REST's) on the test labels.
            from sklearn.metrics import roc_auc_score

            with env.sessions() as s:
                from platform_core.inference.batch import split_rows
                from platform_core.splits.models import Split

                split = s.get(Split, env.split_id)
                assert split is not None
                labels = {i: lab["finding"] for i, _k, lab in split_rows(s, split, "test")}
            y = [labels[row["image_id"]] for row in rows]
            p = [float(row["p_finding"]) for row in rows]
            assert done["metrics"]["n"] == len(rows)
            assert done["metrics"]["macro"]["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    finally:
        worker.stop()


def test_alias_gate_and_archive(env: Env) -> None:
    from platform_core.registry import evaluate

    _promote(env, "cxr-e")
    second = _promote(env, "cxr-e", checkpoint=_other_epoch(env))
    assert second["version"] == 2 and second["test_auroc"] is None  # unknown until evaluated
    r = env.client.put("/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 1})
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 1}
    r = env.client.put("/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 2})
    assert r.status_code == 409 and r.json()["error"]["param"] == "force"
    r = env.client.put(
        "/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 2, "force": True}
    )
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 2}
    assert evaluate.run(env.sessions, env.store, env.settings, second["id"]) == "ready"
    got = env.client.get("/v1/models/cxr-e@champion", headers=env.headers).json()
    assert got["serving"]["version"] == 2
    dicom = next(iter(env.files.values()))
    dicom_headers = {**env.headers, "Content-Type": "application/dicom"}
    assert (
        env.client.post("/v1/models/cxr-e/predict", headers=dicom_headers, content=dicom).json()["version"]
        == 2
    )
    r = env.client.delete("/v1/models/cxr-e/versions/2", headers=env.headers)
    assert r.status_code == 200 and r.json()["status"] == "archived" and r.json()["loaded"] is False
    r = env.client.post("/v1/models/cxr-e:2/predict", headers=dicom_headers, content=dicom)
    assert r.status_code == 410 and r.json()["error"]["type"] == "gone_error"
    # The alias went with the archived version: `name` falls back to the latest ready version.
    assert (
        env.client.post("/v1/models/cxr-e/predict", headers=dicom_headers, content=dicom).json()["version"]
        == 1
    )
    assert env.client.get("/v1/models/cxr-e/versions/2", headers=env.headers).json()["status"] == "archived"
    # With every version archived the model still reads (nothing serving); predicting by name is 410.
    assert env.client.delete("/v1/models/cxr-e/versions/1", headers=env.headers).status_code == 200
    r = env.client.get("/v1/models/cxr-e", headers=env.headers)
    assert r.status_code == 200 and r.json()["serving"] is None
    r = env.client.post("/v1/models/cxr-e/predict", headers=dicom_headers, content=dicom)
    assert r.status_code == 410 and r.json()["error"]["type"] == "gone_error"


def test_bad_input_answers_in_the_error_shape(env: Env) -> None:
    _promote(env, "cxr-f")
    dicom_headers = {**env.headers, "Content-Type": "application/dicom"}

    def check(r: Any, status: int) -> dict[str, Any]:
        assert r.status_code == status, r.text
        error: dict[str, Any] = r.json()["error"]
        assert set(error) == {"type", "message", "param"}
        return error

    check(env.client.post("/v1/models/nope/predict", headers=dicom_headers, content=b"x" * 200), 404)
    check(env.client.post("/v1/models/cxr-f:9/predict", headers=dicom_headers, content=b"x" * 200), 404)
    check(env.client.post("/v1/models/cxr-f/predict", headers={**env.headers, "Content-Type": "text/plain"},
                          content=b"hello"), 415)  # fmt: skip
    check(
        env.client.post(
            "/v1/models/cxr-f/predict", headers=dicom_headers, content=b"not an image at all" * 20
        ),
        415,
    )
    ct = to_bytes(radiograph(patient=900, modality="CT"))
    error = check(env.client.post("/v1/models/cxr-f/predict", headers=dicom_headers, content=ct), 422)
    assert "not_radiograph" in error["message"]
    check(env.client.post("/v1/models/cxr-f/predict", headers=env.headers, json={"instances": [{}]}), 422)
    check(env.client.post("/v1/models/cxr-f/predict", headers=env.headers,
                          json={"instances": [{"image_base64": "%%%"}]}), 422)  # fmt: skip
    check(
        env.client.post("/v1/models/cxr-f/predict", headers=dicom_headers, content=b"\0" * (3 * 1024 * 1024)),
        413,
    )

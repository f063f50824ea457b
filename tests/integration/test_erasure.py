"""Erasure end to end, in the file and the S3 object store: real CRs de-identified and cached, a tiny
model trained by the real runner with MLflow tracking, promoted; then DELETE an image, POST an
erasure by PatientID and DELETE the dataset. After each, no object, row or MLflow artifact of the
erased images remains; versions, splits, jobs and model versions carry the marks; the alias gate
refuses; the same request again removes nothing; another project's key erases nothing; a job whose
pixel cache vanishes under it fails with `data_erased`."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from platform_core.config import Settings
from platform_core.db.session import make_engine, make_sessionmaker
from tests.fixtures_dicom import PLANTED, learnable_pixels, radiograph, to_bytes, uid

pytestmark = [pytest.mark.services, pytest.mark.slow]

N = 24
TWICE = 101  # this patient has a second study: a patient erasure removes both
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 0.003, "image_size": 32, "augmentation": "none",
        "warmup_epochs": 0, "early_stopping_patience": None}  # fmt: skip
RECORD_TABLES = ("audit_events", "erasures")  # the record that an erasure happened: ids and counts


@dataclass
class World:
    settings: Settings
    store: Any
    sessions: Any
    client: Any
    a: dict[str, str]  # the data owner's key
    b: dict[str, str]  # another project's key
    project_id: str
    dataset_id: str
    split_id: str
    job_id: str
    run_id: str
    images: dict[str, dict[str, Any]]  # image id -> row values (keys, pseudonyms, patient number)


def _store_settings(kind: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, Any]:
    if kind == "file":
        return {"object_store_url": f"file://{tmp / 'objects'}"}
    import boto3

    endpoint = request.getfixturevalue("s3_server")
    bucket = f"erasure-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)  # fmt: skip
    creds = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region": "us-east-1"}
    return {"object_store_url": f"s3://{bucket}/tenant", "s3_endpoint_url": endpoint, **creds}


def _ingest(settings: Settings, store: Any, sessions: Any) -> tuple[str, str, str, str]:
    """Project A with a dataset of N+1 CRs (labels by StudyInstanceUID), project B; their keys."""
    from platform_core.auth import service as auth
    from platform_core.datasets import service as datasets
    from platform_core.datasets.ingest import process_image
    from platform_core.datasets.labels import import_labels
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions

    rng = np.random.default_rng(0)
    studies = [(100 + i, 1) for i in range(N)] + [(TWICE, 2)]
    files = [to_bytes(radiograph(patient=p, study=s, modality="CR", pixels=learnable_pixels(p % 2, rng)))
             for p, s in studies]  # fmt: skip
    labels_csv = "StudyInstanceUID,finding\n" + "".join(f"{uid(p, s)},{p % 2}\n" for p, s in studies)
    secret = settings.resolved_secret()
    with sessions() as s:
        project = auth.create_project(s, f"erase-a-{secrets.token_hex(4)}")
        _key, raw_a = auth.create_key(s, project)
        _key, raw_b = auth.create_key(s, auth.create_project(s, f"erase-b-{secrets.token_hex(4)}"))
        options = DatasetOptions(min_image_size=32, cache_size=64, burned_in_text="off")
        dataset = datasets.create_dataset(s, project.id, DatasetCreate(
            name="cxr", task="binary", labels=["finding"], options=options))  # fmt: skip
        uploads = [datasets.Upload(f"f{i}.dcm", io.BytesIO(b)) for i, b in enumerate(files)]
        out = datasets.ingest_uploads(s, store, settings, secret, dataset, uploads)
        import_labels(s, secret, dataset, labels_csv.encode())
        s.commit()
        for o in out:
            assert o.image_id is not None, o
            assert process_image(s, store, o.image_id, secret=secret) == "accepted"
        s.commit()
        return project.id, dataset.id, raw_a, raw_b


def _image_rows(sessions: Any, dataset_id: str) -> dict[str, dict[str, Any]]:
    from platform_core.datasets.models import Image

    with sessions() as s:
        rows = s.scalars(select(Image).where(Image.dataset_id == dataset_id)).all()
        return {
            i.id: {"dicom_key": i.dicom_key, "cache_key": i.cache_key, "patient": i.patient_pseudonym,
                   "study": i.study_pseudonym, "sop": i.sop_instance_uid_pseudonym}
            for i in rows
        }  # fmt: skip


def _train(w: World) -> tuple[str, str]:
    """A job trained by the real runner with MLflow tracking; the run also holds two artifacts that
    name every image (as a data scientist's own evaluation would): a CSV and a JSON."""
    from mlflow.tracking import MlflowClient

    from platform_core.jobs import validation as jobs
    from platform_core.jobs.run import mlflow_tracker, run_job

    r = w.client.post("/v1/fine-tuning/jobs", headers=w.a, json={
        "dataset_id": w.dataset_id, "split": {"seed": 1}, "base_model": "test_resnet", "weights": "random",
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}}, "hyperparameters": FAST})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    with w.sessions() as s:
        jobs.validate(s, job_id, w.store)
        s.commit()
    uri = w.settings.mlflow_tracking_uri or ""
    assert run_job(w.sessions, w.store, job_id, mlflow_tracker(uri, None)) == "succeeded"
    job = w.client.get(f"/v1/fine-tuning/jobs/{job_id}", headers=w.a).json()
    client = MlflowClient(uri)
    lines = "image_id,p_finding\n" + "".join(f"{i},0.5\n" for i in sorted(w.images))
    for name, data in (("predictions.csv", lines), ("cases.json", json.dumps(sorted(w.images)))):
        path = Path(w.settings.data_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)
        client.log_artifact(job["mlflow_run_id"], str(path), "evaluation")
    return job_id, job["mlflow_run_id"]


@pytest.fixture(scope="module", params=["file", "s3"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_url: str
) -> Iterator[World]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from platform_core.storage import open_store

    tmp = tmp_path_factory.mktemp(f"erasure-{request.param}")
    settings = Settings(
        data_dir=tmp / "data", database_url=pg_url, broker_url="memory://", result_backend="cache+memory://",
        mlflow_tracking_uri=f"sqlite:///{tmp / 'mlflow.sqlite'}",
        deid_secret="erasure-" + secrets.token_hex(16),
        max_request_bytes=2 * 1024 * 1024, **_store_settings(request.param, request, tmp),
    )  # fmt: skip
    store = open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(pg_url))
    project_id, dataset_id, raw_a, raw_b = _ingest(settings, store, sessions)
    with TestClient(create_app(settings)) as client:
        w = World(settings, store, sessions, client, {"Authorization": f"Bearer {raw_a}"},
                  {"Authorization": f"Bearer {raw_b}"}, project_id, dataset_id, "", "", "",
                  _image_rows(sessions, dataset_id))  # fmt: skip
        w.job_id, w.run_id = _train(w)
        w.split_id = client.get(f"/v1/fine-tuning/jobs/{w.job_id}", headers=w.a).json()["split"]["id"]
        r = client.post("/v1/models", headers=w.a, json={"job_id": w.job_id, "name": "cxr"})
        assert r.status_code == 201, r.text
        yield w


# --- where an erased image could still be ----------------------------------------------------


def _needles(w: World, image_ids: list[str]) -> set[str]:
    out = set(image_ids)
    for i in image_ids:
        out |= {v for k, v in w.images[i].items() if k in ("dicom_key", "cache_key", "sop") and v}
    return out


def _object_traces(w: World, needles: set[str]) -> list[str]:
    found = []
    for key in w.store.list(""):
        data = w.store.get_bytes(key)
        found += [f"object {key}: {n}" for n in needles if n in key or n.encode() in data]
    return found


def _row_traces(w: World, needles: set[str]) -> list[str]:
    from platform_core.db.models import Base

    found = []
    with w.sessions() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in RECORD_TABLES:
                continue
            for row in s.execute(select(table)):
                text = repr(tuple(row))
                found += [f"row in {table.name}: {n}" for n in needles if n in text]
    return found


def _mlflow_traces(w: World, needles: set[str], tmp: Path) -> list[str]:
    from mlflow.artifacts import download_artifacts

    root = Path(
        download_artifacts(run_id=w.run_id, tracking_uri=w.settings.mlflow_tracking_uri, dst_path=str(tmp))
    )
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"mlflow {path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return found


def _assert_gone(
    w: World, image_ids: list[str], tmp: Path, extra: frozenset[str] | set[str] = frozenset()
) -> None:
    needles = _needles(w, image_ids) | set(extra)
    traces = _object_traces(w, needles) + _row_traces(w, needles) + _mlflow_traces(w, needles, tmp)
    assert traces == []
    csv = _mlflow_text(w, "evaluation/predictions.csv", tmp / "again")
    assert csv.startswith("image_id,p_finding\n")  # rewritten without their lines, not dropped


def _mlflow_text(w: World, path: str, tmp: Path) -> str:
    from mlflow.artifacts import download_artifacts

    uri = w.settings.mlflow_tracking_uri
    local = download_artifacts(run_id=w.run_id, artifact_path=path, tracking_uri=uri, dst_path=str(tmp))
    return Path(local).read_text()


def _marks(w: World) -> dict[str, Any]:
    c, h = w.client, w.a
    split = c.get(f"/v1/datasets/{w.dataset_id}/splits/{w.split_id}", headers=h)
    version_id = split.json()["dataset_version"] if split.status_code == 200 else None
    job = c.get(f"/v1/fine-tuning/jobs/{w.job_id}", headers=h).json()
    model_version = c.get("/v1/models/cxr/versions/1", headers=h).json()
    out = {"job": job["data_erased"], "model_version": model_version["data_erased"]}
    if version_id is not None:
        version = c.get(f"/v1/datasets/{w.dataset_id}/versions/{version_id}", headers=h).json()
        out |= {"split": split.json()["erased_members"], "version": version["erased_members"]}
    return out


def _split_members(w: World) -> list[str]:
    from platform_core.splits.models import SplitAssignment

    with w.sessions() as s:
        return list(s.scalars(select(SplitAssignment.image_id).where(SplitAssignment.split_id == w.split_id)))


# --- the three erasures ------------------------------------------------------------------------


def test_erasure_removes_everything_marks_what_trained_and_is_idempotent(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    w, c = world, world.client
    _other_project_erases_nothing(w)
    assert _marks(w) == {"job": False, "model_version": False, "split": 0, "version": 0}
    assert c.put("/v1/models/cxr/aliases/champion", headers=w.a, json={"version": 1}).status_code == 200

    image_id = next(i for i in _split_members(w) if w.images[i]["patient"] != _patient(w, TWICE))
    _erase_one_image(w, image_id, tmp_path / "image")
    _erase_patient(w, tmp_path / "patient", caplog)
    _job_on_erased_split_fails(w)
    _job_whose_cache_vanishes_fails(w)
    _erase_dataset(w, tmp_path / "dataset")


def _patient(w: World, number: int) -> str:
    from platform_core.erasure.service import patient_pseudonym

    return patient_pseudonym(w.settings.resolved_secret(), f"{PLANTED['patient_id']}-{number}")


def _other_project_erases_nothing(w: World) -> None:
    c, image_id = w.client, next(iter(w.images))
    assert c.delete(f"/v1/datasets/{w.dataset_id}/images/{image_id}", headers=w.b).status_code == 404
    assert c.delete(f"/v1/datasets/{w.dataset_id}", headers=w.b).status_code == 404
    r = c.post("/v1/erasures", headers=w.b, json={"patient_id": f"{PLANTED['patient_id']}-{TWICE}"})
    assert r.status_code == 200, r.text
    assert set(r.json()["removed"].values()) == {0}
    assert _image_rows(w.sessions, w.dataset_id) == w.images


def _tested_ids(w: World) -> list[str]:
    """The image ids in the job's stored test predictions (what a version comparison pairs on)."""
    job = w.client.get(f"/v1/fine-tuning/jobs/{w.job_id}", headers=w.a).json()
    doc = json.loads(w.store.get_bytes(job["result"]["artifacts"]["test_predictions.json"]))
    return list(doc["image_ids"])


def _erase_one_image(w: World, image_id: str, tmp: Path) -> None:
    c = w.client
    tested = int(image_id in _tested_ids(w))
    r = c.delete(f"/v1/datasets/{w.dataset_id}/images/{image_id}", headers=w.a)
    assert r.status_code == 200, r.text
    removed = r.json()["removed"]
    assert r.json()["kind"] == "image" and r.json()["target"] == image_id
    # objects: its DICOM, its pixel cache and, when it was tested, the job's test predictions (rewritten
    # without it); MLflow: the CSV and JSON the test logged, and the run's copy of the test predictions.
    assert removed == {"images": 1, "studies": 1, "labels": 1, "objects": 2 + tested,
                       "mlflow_artifacts": 2 + tested, "dataset_versions_marked": 1, "splits_marked": 1,
                       "jobs_marked": 1, "model_versions_marked": 1}  # fmt: skip
    _assert_gone(w, [image_id], tmp)
    assert image_id not in _tested_ids(w)
    assert _marks(w) == {"job": True, "model_version": True, "split": 1, "version": 1}
    gate = c.put("/v1/models/cxr/aliases/staging", headers=w.a, json={"version": 1, "force": True})
    assert gate.status_code == 409 and "erased" in gate.json()["error"]["message"]
    again = c.post("/v1/models", headers=w.a, json={"job_id": w.job_id, "name": "cxr"})
    assert again.status_code == 409 and "erased" in again.json()["error"]["message"]
    manifest = c.get(f"/v1/datasets/{w.dataset_id}/splits/{w.split_id}/manifest", headers=w.a)
    assert manifest.status_code == 200 and image_id not in manifest.text
    assert manifest.headers["x-erased-members"] == "1"

    again = c.delete(f"/v1/datasets/{w.dataset_id}/images/{image_id}", headers=w.a)
    assert again.status_code == 200 and set(again.json()["removed"].values()) == {0}
    never = c.delete(f"/v1/datasets/{w.dataset_id}/images/img_never", headers=w.a)
    assert never.status_code == 404


def _erase_patient(w: World, tmp: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = w.client
    raw = f"{PLANTED['patient_id']}-{TWICE}"
    pseudonym = _patient(w, TWICE)
    ids = [i for i, v in w.images.items() if v["patient"] == pseudonym]
    assert len(ids) == 2
    tested = int(bool(set(ids) & set(_tested_ids(w))))
    r = c.post("/v1/erasures", headers=w.a, json={"patient_id": raw})
    assert r.status_code == 200, r.text
    assert raw not in r.text and r.json()["target"] == pseudonym
    removed = r.json()["removed"]
    counts = (removed["images"], removed["studies"], removed["labels"], removed["objects"])
    assert counts == (2, 2, 2, 4 + tested)
    _assert_gone(w, ids, tmp, {pseudonym})

    again = c.post("/v1/erasures", headers=w.a, json={"patient_id": raw})
    assert again.status_code == 200 and set(again.json()["removed"].values()) == {0}
    events = c.get("/v1/audit-events", headers=w.a).json()["data"]
    erasures = [e for e in events if e["action"].startswith("erasure.")]
    assert [e["action"] for e in erasures][:3] == ["erasure.patient", "erasure.patient", "erasure.image"]
    assert erasures[1]["details"] == {"kind": "patient", "target": pseudonym, "removed": removed}
    # The original id is nowhere: not in a row (records included), not in a log line.
    with w.sessions() as s:
        from platform_core.db.models import Base

        for table in Base.metadata.sorted_tables:
            assert all(raw not in repr(tuple(row)) for row in s.execute(select(table))), table.name
    assert raw not in caplog.text


def _job_on_erased_split_fails(w: World) -> None:
    from platform_core.jobs import validation as jobs

    r = w.client.post("/v1/fine-tuning/jobs", headers=w.a, json={
        "dataset_id": w.dataset_id, "split_id": w.split_id, "base_model": "test_resnet", "weights": "random",
        "hyperparameters": FAST})  # fmt: skip
    assert r.status_code == 201, r.text
    with w.sessions() as s:
        jobs.validate(s, r.json()["id"], w.store)
        s.commit()
    job = w.client.get(f"/v1/fine-tuning/jobs/{r.json()['id']}", headers=w.a).json()
    assert job["status"] == "failed" and job["error"]["code"] == "data_erased", job["error"]


def _job_whose_cache_vanishes_fails(w: World) -> None:
    """The erasure deletes a pixel cache after the job has read its split: the job fails, clearly."""
    from platform_core.jobs import validation as jobs
    from platform_core.jobs.run import run_job

    r = w.client.post("/v1/fine-tuning/jobs", headers=w.a, json={
        "dataset_id": w.dataset_id, "split": {"seed": 2}, "base_model": "test_resnet", "weights": "random",
        "hyperparameters": FAST})  # fmt: skip
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    with w.sessions() as s:
        jobs.validate(s, job_id, w.store)
        s.commit()
    live = _image_rows(w.sessions, w.dataset_id)
    w.store.delete(next(v["cache_key"] for v in live.values()))
    assert run_job(w.sessions, w.store, job_id) == "failed"
    job = w.client.get(f"/v1/fine-tuning/jobs/{job_id}", headers=w.a).json()
    assert job["error"]["code"] == "data_erased" and "erased" in job["error"]["message"]


def _erase_dataset(w: World, tmp: Path) -> None:
    c = w.client
    live = sorted(_image_rows(w.sessions, w.dataset_id))
    r = c.delete(f"/v1/datasets/{w.dataset_id}", headers=w.a)
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["images"] == len(live) == N + 1 - 3
    assert list(w.store.list(f"datasets/{w.dataset_id}/")) == []
    _assert_gone(w, sorted(w.images), tmp, {v["patient"] for v in w.images.values()})
    assert c.get(f"/v1/datasets/{w.dataset_id}", headers=w.a).status_code == 404
    marks = _marks(w)
    assert marks == {"job": True, "model_version": True}
    again = c.delete(f"/v1/datasets/{w.dataset_id}", headers=w.a)
    assert again.status_code == 200 and set(again.json()["removed"].values()) == {0}


class _InProcess(httpx.BaseTransport):
    """The app in this process (the TestClient's transport) behind the SDK's own httpx client."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        return httpx.Response(response.status_code, headers=response.headers, content=response.read())


def test_sdk_erases_a_dataset_and_a_patient_and_names_a_missing_image(world: World) -> None:
    import medtune
    from medtune.errors import NotFoundError

    transport = _InProcess(world.client._transport)
    key = world.a["Authorization"].removeprefix("Bearer ")
    with medtune.Client("http://testserver", key, transport=transport, max_retries=0) as sdk:
        dataset = sdk.datasets.create("empty", task="binary", labels=["finding"])
        with pytest.raises(NotFoundError):
            sdk.datasets.delete_image(dataset, "img_never")
        first = sdk.datasets.delete(dataset)
        assert (first.kind, first.target, first.removed["images"]) == ("dataset", dataset.id, 0)
        assert sdk.datasets.delete(dataset).id != first.id
        with pytest.raises(NotFoundError):
            sdk.datasets.get(dataset)
        nobody = sdk.erasures.create("NO-SUCH-PATIENT")
        assert nobody.kind == "patient" and nobody.removed["images"] == 0
        assert "NO-SUCH-PATIENT" not in nobody.model_dump_json()


def test_erasure_on_sqlite_the_embedded_database(sqlite_url: str, tmp_path: Path) -> None:
    """The same queries on SQLite (embedded mode): a frozen version marked, rows and objects gone."""
    from platform_core.erasure.service import Eraser
    from platform_core.splits import service as splits
    from platform_core.storage import open_store

    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, broker_url="memory://",
                        result_backend="cache+memory://", object_store_url=f"file://{tmp_path / 'objects'}",
                        deid_secret="erasure-sqlite-" + secrets.token_hex(16))  # fmt: skip
    store = open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(sqlite_url))
    project_id, dataset_id, _a, _b = _ingest(settings, store, sessions)
    images = _image_rows(sessions, dataset_id)
    studies = [(100 + i, 1) for i in range(N)] + [(TWICE, 2)]
    with sessions() as s:
        from platform_core.datasets.labels import import_labels, read_groups
        from platform_core.datasets.models import Dataset

        rows = "".join(f"{uid(p, st)},{p % 2},{'north' if p % 2 else 'south'}\n" for p, st in studies)
        csv_text = "StudyInstanceUID,finding,group:site\n" + rows
        dataset = s.get(Dataset, dataset_id)
        assert dataset is not None
        import_labels(s, settings.resolved_secret(), dataset, csv_text.encode(), store)
        version = splits.freeze_version(s, project_id, dataset_id)
        s.commit()
        before = read_groups(store, dataset_id)
        eraser = Eraser(s, store, settings.mlflow_tracking_uri, project_id)
        patient = eraser.erase_patient(settings.resolved_secret(), f"{PLANTED['patient_id']}-{TWICE}")
        s.commit()
        assert (patient.removed.images, patient.removed.dataset_versions_marked) == (2, 1)
        # The erased patient's two studies leave the label-groups file; every other study keeps its group.
        after = read_groups(store, dataset_id)
        assert len(before) == len(studies) and len(after) == len(before) - 2
        s.refresh(version)
        assert version.erased_members == 2
        whole = eraser.erase_dataset(dataset_id)
        s.commit()
        assert whole.removed.images == N - 1 and eraser.erase_dataset(dataset_id).removed.images == 0
        s.commit()
    assert list(store.list("")) == []
    with sessions() as s:
        from platform_core.db.models import Base

        for table in Base.metadata.sorted_tables:
            if table.name not in RECORD_TABLES:
                text = " ".join(repr(tuple(r)) for r in s.execute(select(table)))
                assert not [i for i in images if i in text], table.name


def test_an_image_erased_while_its_pixels_are_built_leaves_no_cache(sqlite_url: str, tmp_path: Path) -> None:
    """The worker builds the cache, the erasure commits, then the worker records: its cache goes too."""
    from platform_core.auth import service as auth
    from platform_core.datasets import ingest
    from platform_core.datasets import service as datasets
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
    from platform_core.erasure.service import Eraser
    from platform_core.storage import open_store

    settings = Settings(data_dir=tmp_path / "data", database_url=sqlite_url, broker_url="memory://",
                        result_backend="cache+memory://", object_store_url=f"file://{tmp_path / 'objects'}",
                        deid_secret="erasure-race-" + secrets.token_hex(16))  # fmt: skip
    store, secret = open_store(settings.object_store_url or "", settings), settings.resolved_secret()
    sessions = make_sessionmaker(make_engine(sqlite_url))
    pixels = learnable_pixels(1, np.random.default_rng(1))
    with sessions() as s:
        project = auth.create_project(s, f"erase-race-{secrets.token_hex(4)}")
        dataset = datasets.create_dataset(s, project.id, DatasetCreate(
            name="race", task="binary", labels=["finding"],
            options=DatasetOptions(min_image_size=32, cache_size=64, burned_in_text="off")))  # fmt: skip
        upload = datasets.Upload("a.dcm", io.BytesIO(to_bytes(radiograph(patient=7, study=1, pixels=pixels))))
        (out,) = datasets.ingest_uploads(s, store, settings, secret, dataset, [upload])
        s.commit()
        assert out.image_id is not None
        jobs = ingest.pending_pixels(s, [out.image_id])
    results = ingest.build_caches(store, jobs.values(), secret=secret)
    (built,) = results
    assert built.cache_key is not None and store.exists(built.cache_key)
    with sessions() as s:
        Eraser(s, store, settings.mlflow_tracking_uri, project.id).erase_image(dataset.id, out.image_id)
        s.commit()
    with sessions() as s:
        statuses = ingest.record_pixels(s, results)
        leftovers = ingest.leftovers(s, results, statuses)
        s.commit()
    assert statuses == {} and leftovers == [built.cache_key]
    for key in leftovers:
        store.delete(key)
    assert list(store.list(f"datasets/{dataset.id}/")) == []

"""Hostile input against a live platform: each gets its clear 4xx or rejection reason, memory stays flat.

A live API (uvicorn in its own process) and a real Celery worker process, embedded mode as `medtune up`
runs them (SQLite, local objects, filesystem broker), receive a deflate bomb, an RLE pixel bomb, a
JPEG frame declaring 30000 x 30000 inside a 256 x 256 file, a PNG declaring 100000 x 100000 pixels
sent to predict, a zip of 100,000 empty members, a multipart body of 100,000 parts, a predict body
of 10,000 instances and jobs with absurd hyperparameters. Each
process's peak resident memory (VmHWM, the worker's pool child included) stays within 1 GiB of its
baseline, /readyz answers 200 afterwards, and a valid file uploaded next is accepted by the worker.

Predictions check every image before any model work, so the model the predict cases call is a
registered version whose adapter was never trained (rows written straight to the database):
training one would cost a minute and prove nothing more here.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures_dicom import radiograph, to_bytes
from tests.hostile_inputs import (
    compressed_frame_bomb,
    deflate_bomb,
    empty_members_zip,
    many_parts,
    png_header,
    rle_bomb,
)
from tests.live import make_key
from tests.services import ROOT, WorkerProcess, free_port, stop_process, wait_for

pytestmark = [pytest.mark.slow]

GIB_KB = 1024 * 1024
# The counting pass over a bomb keeps nothing, whatever the cap: a lower one only makes this test faster.
INFLATED_CAP = 256 * 1024 * 1024
PREP = {"cache_size": 64, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "min_image_size": 32}


def peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def with_children(pid: int) -> list[int]:
    """The process and its descendants (a prefork worker's pool children do the tasks)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out.extend(with_children(int(child)))
    return out


@dataclass
class Platform:
    client: httpx.Client
    api_pid: int
    worker: WorkerProcess
    db_url: str
    project_id: str

    def worker_log(self) -> str:
        return self.worker.output()[-3000:]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    from platform_core.config import Settings
    from platform_core.db.migrate import upgrade

    secret = "hostile-" + secrets.token_hex(16)
    env = {"MEDTUNE_DATA_DIR": str(tmp_path), "MEDTUNE_DEID_SECRET": secret,
           "MEDTUNE_MAX_INFLATED_BYTES": str(INFLATED_CAP)}  # fmt: skip
    settings = Settings(data_dir=tmp_path, deid_secret=secret)
    upgrade(settings.db_url)
    project_id, raw = make_key(settings, "hostile")
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="ingest").start()
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code < 500
            except httpx.HTTPError:
                return api.poll() is not None

        wait_for(up, 60, what="uvicorn")
        assert api.poll() is None, (tmp_path / "api.log").read_text()
        headers = {"Authorization": f"Bearer {raw}"}
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            yield Platform(client, api.pid, worker, settings.db_url, project_id)
    finally:
        stop_process(api)
        log.close()
        worker.stop()


def untrained_manifest(version_id: str, name: str, prefix: str) -> Any:
    """A complete manifest (the serving contract refuses partial ones); its adapter is never loaded."""
    from platform_core.artifacts import AdapterConfig, BaseWeights, Method, ModelManifest
    from platform_core.inference.preprocess import Preprocessing

    prep = Preprocessing(PREP["cache_size"], PREP["image_size"], tuple(PREP["mean"]), tuple(PREP["std"]),
                         PREP["min_image_size"])  # fmt: skip
    adapter = AdapterConfig(
        base=BaseWeights("test_vit", "test_vit", "vit", "random", None, seed=0), method=Method(),
        lora_targets=("attn.qkv",), classifier="head", labels=("finding",), preprocessing=prep,
        thresholds={"finding": 0.5}, adapter_sha256="0" * 64, job_id="", epoch=0,
    )  # fmt: skip
    return ModelManifest(
        adapter=adapter, id=version_id, model=name, version=1, prefix=prefix, thresholds_source="default",
        test_metrics=None, checkpoint_metric="val_auroc", split_id=None, split_sha256=None,
        dataset_id="ds_untrained", dataset_version_id=None, mlflow_run_id=None,
    )  # fmt: skip


def register_untrained_model(db_url: str, project_id: str, name: str) -> None:
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.ids import new_id
    from platform_core.registry.models import ModelVersion, RegisteredModel

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        model = RegisteredModel(id=new_id("model"), project_id=project_id, name=name, latest_number=1)
        s.add(model)
        s.flush()
        version_id, prefix = new_id("mv"), f"models/{name}/1"
        manifest = untrained_manifest(version_id, name, prefix).to_json()
        s.add(ModelVersion(id=version_id, project_id=project_id, model_id=model.id, number=1, job_id=None,
                           epoch=0, status="ready", manifest=manifest, prefix=prefix,
                           adapter_sha256="0" * 64))  # fmt: skip
        s.commit()
    engine.dispose()


def upload(client: httpx.Client, dataset_id: str, name: str, data: bytes, kind: str) -> dict[str, Any]:
    r = client.post(f"/v1/datasets/{dataset_id}/files", files=[("files", (name, data, kind))])
    assert r.status_code == 202, r.text
    [outcome] = r.json()["data"]
    return dict(outcome)


def ingest_valid(p: Platform, dataset_id: str, patient: int) -> None:
    data = to_bytes(radiograph(patient=patient))
    outcome = upload(p.client, dataset_id, "ok.dcm", data, "application/dicom")
    assert outcome["outcome"] == "queued", outcome

    def status() -> str | None:
        images = p.client.get(f"/v1/datasets/{dataset_id}/images", params={"status": "accepted"}).json()
        found = [i["status"] for i in images["data"] if i["id"] == outcome["image_id"]]
        return found[0] if found else None

    assert wait_for(status, 120, 0.5, "the valid file to be accepted") == "accepted", p.worker_log()


def expect_error(r: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    for needle in needles:
        assert needle in error["message"] or needle == error.get("param"), error
    return error


def peaks(p: Platform) -> dict[str, int]:
    out = {"api": peak_kb(p.api_pid)}
    assert p.worker.proc is not None
    for i, pid in enumerate(with_children(p.worker.proc.pid)):
        out[f"worker[{i}] {pid}"] = peak_kb(pid)
    return out


def test_hostile_inputs_get_clear_answers_and_memory_stays_flat(platform: Platform, tmp_path: Path) -> None:
    p, client = platform, platform.client
    body = {"name": "hostile", "task": "binary", "labels": ["finding"]}
    dataset_id = client.post("/v1/datasets", json=body).raise_for_status().json()["id"]
    register_untrained_model(p.db_url, p.project_id, "cxr")
    ingest_valid(p, dataset_id, patient=1)  # both processes warm: the baseline includes their imports
    baseline = peaks(p)

    # A deflate bomb: 3 MB on the wire, 3 GiB inflated.
    outcome = upload(client, dataset_id, "bomb.dcm", deflate_bomb(3 * 1024**3), "application/dicom")
    assert (outcome["outcome"], outcome["reason"]) == ("rejected", "too_large"), outcome
    assert "MEDTUNE_MAX_INFLATED_BYTES" in outcome["message"]

    # The same bomb over STOW-RS: failed, with the sender's UIDs read without inflating it.
    bomb = deflate_bomb(3 * 1024**3, patient=903)
    related = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b3'}
    stow = b"--b3\r\nContent-Type: application/dicom\r\n\r\n" + bomb + b"\r\n--b3--\r\n"
    r = client.post(f"/v1/datasets/{dataset_id}/dicomweb/studies", headers=related, content=stow)
    assert r.status_code == 409, r.text
    [failed] = r.json()["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [radiograph(patient=903).SOPInstanceUID]

    # An RLE pixel bomb: 20000 x 20000 declared over a few kB of segments, refused from its header.
    outcome = upload(client, dataset_id, "rle.dcm", rle_bomb(20000), "application/dicom")
    assert (outcome["outcome"], outcome["reason"]) == ("rejected", "too_large"), outcome
    assert "400,000,000" in outcome["message"] and "MEDTUNE_MAX_PIXELS" in outcome["message"]

    # A JPEG frame whose own header says 30000 x 30000 inside a file whose DICOM header says 256 x 256.
    outcome = upload(client, dataset_id, "jpeg.dcm", compressed_frame_bomb(30000), "application/dicom")
    assert (outcome["outcome"], outcome["reason"]) == ("rejected", "too_large"), outcome
    assert "compressed frame declares 900,000,000 pixels" in outcome["message"]

    # A PNG declaring 100000 x 100000 pixels, and the RLE bomb, sent to predict.
    huge = png_header(100_000, 100_000)
    for data, kind in ((huge, "image/png"), (rle_bomb(), "application/dicom")):
        r = client.post("/v1/models/cxr/predict", content=data, headers={"Content-Type": kind})
        expect_error(r, 422, "too_large", "MEDTUNE_MAX_PIXELS")

    # A predict body of 10,000 instances, and one just over the per-request setting.
    one = base64.b64encode(huge).decode()
    r = client.post("/v1/models/cxr/predict", json={"instances": [{"image_base64": one}] * 10_000})
    expect_error(r, 422, "instances")
    r = client.post("/v1/models/cxr/predict", json={"instances": [{"image_base64": one}] * 65})
    expect_error(r, 422, "MEDTUNE_MAX_PREDICT_INSTANCES")

    # A zip of 100,000 empty members: one rejection for the archive, nothing ingested from it.
    archive = empty_members_zip(tmp_path / "members.zip", 100_000)
    with archive.open("rb") as fh:
        r = client.post(f"/v1/datasets/{dataset_id}/files",
                        files=[("files", ("members.zip", fh, "application/zip"))])  # fmt: skip
    assert r.status_code == 202, r.text
    [outcome] = r.json()["data"]
    assert (outcome["outcome"], outcome["reason"]) == ("rejected", "too_many_members"), outcome
    assert "100,000" in outcome["message"] and "MEDTUNE_MAX_ZIP_MEMBERS" in outcome["message"]

    # A multipart body of 100,000 parts: refused once past the parts cap, before the rest is read.
    boundary = "hostile" + secrets.token_hex(4)
    started = time.monotonic()
    # httpx reads the early answer even though the server stops reading the body.
    r = client.post(f"/v1/datasets/{dataset_id}/files", content=many_parts(boundary, 100_000),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    expect_error(r, 413, "MEDTUNE_MAX_MULTIPART_PARTS")
    assert time.monotonic() - started < 240

    # Jobs with absurd hyperparameters: 422 naming the parameter.
    job = {"dataset_id": dataset_id, "base_model": "test_vit", "weights": "random"}
    r = client.post("/v1/fine-tuning/jobs", json={**job, "hyperparameters": {"epochs": 1_000_000}})
    expect_error(r, 422, "hyperparameters.epochs", "1000")
    r = client.post("/v1/fine-tuning/jobs", json={**job, "method": {"type": "lora", "lora": {"r": 100_000}}})
    expect_error(r, 422, "method.lora.r", "512")

    assert client.get("/readyz").status_code == 200
    ingest_valid(p, dataset_id, patient=2)
    after = peaks(p)
    assert set(after) == set(baseline), (baseline, after)  # no worker process died and came back
    growth_mb = {name: (after[name] - baseline[name]) / 1024 for name in after}
    assert all(kb - baseline[name] < GIB_KB for name, kb in after.items()), growth_mb

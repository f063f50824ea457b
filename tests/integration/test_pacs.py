"""PACS connectivity against a real Orthanc (Debian's orthanc + orthanc-dicomweb) and dcmtk's tools.

One stack per module: PostgreSQL, a real Celery worker on Redis, medtune's DICOM listener (in this
process's threads, as `medtune dicom` runs it), the API (TestClient over the same database) and
Orthanc, which knows the listener as a modality. Each test makes its own dataset, AE title and studies.
"""

from __future__ import annotations

import io
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from platform_core.config import Settings
from platform_core.dicom.deid import key_hmac
from tests.fixtures_dicom import PLANTED, radiograph, to_bytes, uid
from tests.labelled import call, create_job, labelled_split, wait_job, wait_ready
from tests.live import make_key
from tests.orthanc import Orthanc, running_orthanc
from tests.services import WorkerProcess, free_port, redis_worker_stack, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

CALLERS = ["ORTHANC@127.0.0.1", "STORESCU@127.0.0.1"]
QUEUES = "ingest,train"  # train: the inference test trains its tiny model on the same worker


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    settings: Settings
    orthanc: Orthanc
    listener_port: int
    client: Any
    headers: dict[str, str]
    crash_file: Path
    worker: WorkerProcess

    def new_worker(self) -> WorkerProcess:
        self.worker = WorkerProcess(self.env, self.tmp / f"worker-{secrets.token_hex(3)}.log", QUEUES).start()
        return self.worker

    def dataset(self, ae_title: str | None = None) -> dict[str, Any]:
        body = {"name": f"pacs-{secrets.token_hex(3)}", "task": "binary", "labels": ["finding"],
                "options": {"min_image_size": 32}, "dicom_ae_title": ae_title}  # fmt: skip
        return call(self.client, "POST", "/v1/datasets", self.headers, json=body)


def _dcmtk(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str) -> Iterator[Stack]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.pacs.listener import Listener
    from platform_core.storage import open_store
    from worker.app import dispatcher, make_celery

    tmp = tmp_path_factory.mktemp("pacs")
    env, base = redis_worker_stack(tmp, pg_url, redis_url, "pacs")
    port = free_port()
    crash_file = tmp / "crash"
    env |= {"MEDTUNE_TEST_CRASH_FILE": str(crash_file), "MEDTUNE_PACS_IMPORT_STALE_S": "2"}
    settings = base.model_copy(update={"dicom_allowed_callers": CALLERS, "dicom_port": port,
                                       "pacs_import_stale_s": 2.0})  # fmt: skip
    worker = WorkerProcess(env, tmp / "worker.log", QUEUES).start()
    engine = make_engine(pg_url)
    store = open_store(settings.object_store_url or "", settings)
    listener = Listener(settings, make_sessionmaker(engine), store, dispatcher(make_celery(settings)))
    listener.start("127.0.0.1", port)
    _project, key = make_key(settings, f"pacs-{secrets.token_hex(3)}")
    try:
        with (
            running_orthanc(tmp / "orthanc", {"medtune": ["MEDTUNE", "127.0.0.1", port]}) as orthanc,
            TestClient(create_app(settings)) as client,
        ):
            s = Stack(tmp, env, settings, orthanc, port, client, {"Authorization": f"Bearer {key}"},
                      crash_file, worker)  # fmt: skip
            yield s
            s.worker.stop(signal.SIGQUIT)
    finally:
        worker.stop(signal.SIGQUIT)
        listener.stop()
        engine.dispose()


def _study(stack: Stack, patient: int) -> tuple[bytes, str, str]:
    """A radiograph for `patient` in Orthanc: (its bytes, StudyInstanceUID, AccessionNumber)."""
    ds = radiograph(patient=patient, study=1, instance=1, size=64, seed=patient)
    data = to_bytes(ds)
    stack.orthanc.upload(data)
    return data, str(ds.StudyInstanceUID), str(ds.AccessionNumber)


def _no_identifier_stored(stack: Stack, patient: int) -> None:
    objects = Path(stack.settings.object_store_url.removeprefix("file://"))  # type: ignore[union-attr]
    blobs = b"".join(p.read_bytes() for p in objects.rglob("*") if p.is_file())
    assert blobs, "nothing stored"
    for value in (f"{PLANTED['patient_id']}-{patient}", f"{PLANTED['accession']}{patient}1", uid(patient, 1)):
        assert value.encode() not in blobs


# --- the listener ----------------------------------------------------------------------------


def test_pacs_and_storescu_store_into_the_dataset_of_the_called_ae(stack: Stack) -> None:
    ae = f"DS{secrets.token_hex(4).upper()}"
    dataset = stack.dataset(ae)
    assert dataset["dicom_ae_title"] == ae
    stack.orthanc.rest(
        "PUT", "/modalities/push", json={"AET": ae, "Host": "127.0.0.1", "Port": stack.listener_port}
    )
    _data, _uid, _acc = _study(stack, 201)
    orthanc_study = stack.orthanc.rest("GET", "/studies")
    found = [s for s in orthanc_study if stack.orthanc.rest("GET", f"/studies/{s}")["MainDicomTags"]
             ["StudyInstanceUID"] == uid(201, 1)]  # fmt: skip
    sent = stack.orthanc.rest(
        "POST", "/modalities/push/store", json={"Resources": found, "Synchronous": True}
    )
    assert sent["InstancesCount"] == 1 and sent["FailedInstancesCount"] == 0
    path = stack.tmp / "storescu.dcm"
    path.write_bytes(to_bytes(radiograph(patient=202, size=64, seed=202)))
    out = _dcmtk("storescu", "-aet", "STORESCU", "-aec", ae, "127.0.0.1", str(stack.listener_port), str(path))
    assert out.returncode == 0, out.stderr

    ready = wait_ready(stack.client, stack.headers, dataset["id"])
    assert ready["counts"]["accepted"] == 2 and ready["counts"]["studies"] == 2
    images = call(stack.client, "GET", f"/v1/datasets/{dataset['id']}/images", stack.headers)["data"]
    for image in images:
        dicom = stack.client.get(
            f"/v1/datasets/{dataset['id']}/images/{image['id']}/dicom", headers=stack.headers
        )
        assert dicom.status_code == 200 and PLANTED["patient_name"].encode() not in dicom.content
        assert image["patient_pseudonym"] and image["study_pseudonym"]
    associations = call(stack.client, "GET", f"/v1/datasets/{dataset['id']}/associations", stack.headers)[
        "data"
    ]
    assert sorted(a["calling_ae_title"] for a in associations) == ["ORTHANC", "STORESCU"]
    assert all(a["received"] == 1 and a["queued"] == 1 and a["status"] == "released" for a in associations)
    _no_identifier_stored(stack, 201)
    _no_identifier_stored(stack, 202)


def test_echo_answers_and_unknown_callers_are_refused_at_association(stack: Stack) -> None:
    ae = f"DS{secrets.token_hex(4).upper()}"
    dataset = stack.dataset(ae)
    port = str(stack.listener_port)
    assert _dcmtk("echoscu", "-aet", "STORESCU", "-aec", "MEDTUNE", "127.0.0.1", port).returncode == 0
    refused = _dcmtk("echoscu", "-aet", "INTRUDER", "-aec", "MEDTUNE", "127.0.0.1", port)
    assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
    path = stack.tmp / "intruder.dcm"
    path.write_bytes(to_bytes(radiograph(patient=203, size=64)))
    refused = _dcmtk("storescu", "-aet", "INTRUDER", "-aec", ae, "127.0.0.1", port, str(path))
    assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
    unknown_called = _dcmtk("storescu", "-aet", "STORESCU", "-aec", "NOSUCHAE", "127.0.0.1", port, str(path))
    assert unknown_called.returncode != 0
    got = call(stack.client, "GET", f"/v1/datasets/{dataset['id']}", stack.headers)
    assert got["counts"]["received"] == 0
    assert (
        call(stack.client, "GET", f"/v1/datasets/{dataset['id']}/associations", stack.headers)["data"] == []
    )


def test_an_ae_title_is_unique_per_deployment(stack: Stack) -> None:
    ae = f"DS{secrets.token_hex(4).upper()}"
    stack.dataset(ae)
    body = {"name": "again", "task": "binary", "labels": ["finding"], "dicom_ae_title": ae}
    r = stack.client.post("/v1/datasets", json=body, headers=stack.headers)
    assert r.status_code == 409 and r.json()["error"]["param"] == "dicom_ae_title"


# --- imports ---------------------------------------------------------------------------------


def _node(stack: Stack, kind: str) -> str:
    body: dict[str, Any] = {"name": f"{kind}-{secrets.token_hex(3)}", "kind": kind}
    if kind == "dicomweb":
        body |= {
            "url": stack.orthanc.dicomweb,
            "auth": {"type": "basic", "username": "u", "password": "pw-secret"},
        }
    else:
        body |= {"host": "127.0.0.1", "port": stack.orthanc.dicom_port, "ae_title": stack.orthanc.ae_title}
    node = call(stack.client, "POST", "/v1/pacs-nodes", stack.headers, json=body)
    assert "pw-secret" not in str(node) and "password" not in str(node)
    return str(node["id"])


def _wait_import(stack: Stack, dataset_id: str, import_id: str, timeout: float = 90) -> dict[str, Any]:
    def ended() -> Any:
        got = call(stack.client, "GET", f"/v1/datasets/{dataset_id}/imports/{import_id}", stack.headers)
        return got if got["status"] in ("succeeded", "failed", "cancelled") else None

    out: dict[str, Any] = wait_for(
        ended, timeout, 0.3, f"import {import_id} ({stack.worker.output()[-2000:]})"
    )
    return out


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_an_import_pulls_a_labels_csv_studies(stack: Stack, kind: str) -> None:
    base = 300 if kind == "dicomweb" else 400
    studies = [_study(stack, base + i) for i in range(3)]
    missing = f"NOSUCH{base}"
    rows = [
        "AccessionNumber,finding",
        *(f"{acc},{i % 2}" for i, (_d, _u, acc) in enumerate(studies)),
        f"{missing},1",
    ]
    dataset = stack.dataset()
    r = stack.client.post(f"/v1/datasets/{dataset['id']}/imports", headers=stack.headers,
                          data={"node_id": _node(stack, kind)},
                          files={"labels": ("labels.csv", "\n".join(rows).encode(), "text/csv")})  # fmt: skip
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["labels"]["imported"] == 4 and created["progress"]["studies_total"] == 4
    for _d, study_uid, acc in studies:
        assert acc not in r.text and study_uid not in r.text
    done = _wait_import(stack, dataset["id"], created["id"])
    assert done["status"] == "succeeded", done
    outcomes = {s["key_hmac"]: s for s in done["studies"]}
    secret = stack.settings.resolved_secret()
    for _d, _u, acc in studies:
        study = outcomes[key_hmac(secret, acc)]
        assert (study["status"], study["instances"], study["queued"]) == ("done", 1, 1)
    assert outcomes[key_hmac(secret, missing)]["status"] == "not_found"
    ready = wait_ready(stack.client, stack.headers, dataset["id"])
    assert ready["counts"]["accepted"] == 3 and ready["counts"]["labelled_studies"] == 3
    _no_identifier_stored(stack, base)
    logs = stack.worker.output()
    assert not any(acc in logs or study_uid in logs for _d, study_uid, acc in studies)


def test_a_killed_import_resumes_without_duplicates(stack: Stack) -> None:
    from worker.app import make_celery

    studies = [_study(stack, 500 + i) for i in range(4)]
    secret = stack.settings.resolved_secret()
    stack.crash_file.write_text(key_hmac(secret, studies[2][1]))  # the worker dies before the third study
    dataset = stack.dataset()
    body = {"node_id": _node(stack, "dicomweb"), "study_instance_uids": [u for _d, u, _a in studies]}
    created = call(stack.client, "POST", f"/v1/datasets/{dataset['id']}/imports", stack.headers, json=body)
    path = f"/v1/datasets/{dataset['id']}/imports/{created['id']}"

    def two_done_then_crash() -> bool:
        got = call(stack.client, "GET", path, stack.headers)
        return got["progress"]["studies_done"] == 2 and "exitcode 137" in stack.worker.output()

    wait_for(two_done_then_crash, 90, 0.3, "the worker to die at the third study")
    stack.worker.stop(signal.SIGKILL)  # the whole worker goes, as in a restart
    stack.crash_file.unlink()
    assert call(stack.client, "GET", path, stack.headers)["status"] == "running"
    stack.new_worker()
    # What the beat sends every pacs_import_stale_s / 2: the stale import goes back on the queue.
    beat = make_celery(stack.settings)
    wait_for(lambda: beat.send_task("pacs.requeue_stale", queue="ingest").get(timeout=30), 60, 1.0,
             "the stale import to be requeued")  # fmt: skip
    done = _wait_import(stack, dataset["id"], created["id"])
    assert done["status"] == "succeeded", done
    assert [s["status"] for s in done["studies"]] == ["done"] * 4
    assert sum(s["instances"] for s in done["studies"]) == 4
    ready = wait_ready(stack.client, stack.headers, dataset["id"])
    assert ready["counts"]["accepted"] == 4 and ready["counts"]["duplicates"] == 0


def test_keys_are_sealed_while_an_import_runs_and_gone_when_it_ends(stack: Stack) -> None:
    from sqlalchemy import create_engine, text

    _d, study_uid, _acc = _study(stack, 600)
    dataset = stack.dataset()
    body = {"node_id": _node(stack, "dicomweb"), "study_instance_uids": [study_uid]}
    created = call(stack.client, "POST", f"/v1/datasets/{dataset['id']}/imports", stack.headers, json=body)
    _wait_import(stack, dataset["id"], created["id"])
    engine = create_engine(stack.settings.db_url)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT keys_encrypted FROM pacs_imports WHERE id = :i"), {"i": created["id"]}
        ).one()
        secrets_row = conn.execute(
            text("SELECT auth_secret FROM pacs_nodes WHERE id = :i"), {"i": body["node_id"]}
        )
        sealed = secrets_row.scalar_one()
    engine.dispose()
    assert row.keys_encrypted is None
    assert sealed is not None and b"pw-secret" not in bytes(sealed)


# --- results back into the PACS ----------------------------------------------------------------


def _in_orthanc(stack: Stack, study_uid: str, modality: str) -> bytes | None:
    found = stack.orthanc.rest("POST", "/tools/find", json={"Level": "Instance", "Query": {
        "StudyInstanceUID": study_uid, "Modality": modality}})  # fmt: skip
    if not found:
        return None
    import httpx

    return httpx.get(f"{stack.orthanc.http}/instances/{found[0]}/file", timeout=30).content


def _database_text(stack: Stack) -> str:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(stack.settings.db_url)
    with engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        rows = [str(r[0]) for t in tables for r in conn.execute(text(f'SELECT CAST(t AS text) FROM "{t}" t'))]
    engine.dispose()
    return "\n".join(rows)


def test_a_study_sent_to_a_models_ae_comes_back_as_an_sr(stack: Stack) -> None:
    from platform_core.pacs import sr

    tag = secrets.token_hex(3)
    dataset_id, split_id = labelled_split(
        stack.client, stack.headers, stack.tmp / f"train-{tag}", patients=16
    )
    job = create_job(stack.client, stack.headers, dataset_id, split_id)
    assert wait_job(stack.client, stack.headers, job["id"], timeout=300, log=stack.worker.output)[
        "status"
    ] == ("succeeded")
    name, ae = f"chest-{tag}", f"AI{tag.upper()}"
    call(stack.client, "POST", "/v1/models", stack.headers, json={"job_id": job["id"], "name": name})
    bound = call(stack.client, "PUT", f"/v1/models/{name}/versions/1/dicom-ae-title", stack.headers,
                 json={"ae_title": ae})  # fmt: skip
    assert bound["dicom_ae_title"] == ae
    _node(stack, "dimse")  # the SR goes back to the project's node whose AE title is the caller's
    stack.orthanc.rest("PUT", f"/modalities/ai-{tag}", json={"AET": ae, "Host": "127.0.0.1",
                                                              "Port": stack.listener_port})  # fmt: skip
    data, study_uid, accession = _study(stack, 700)
    study = stack.orthanc.rest(
        "POST", "/tools/find", json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}}
    )
    sent = stack.orthanc.rest(
        "POST", f"/modalities/ai-{tag}/store", json={"Resources": study, "Synchronous": True}
    )
    assert sent["FailedInstancesCount"] == 0

    report = wait_for(lambda: _in_orthanc(stack, study_uid, "SR"), 60, 0.5, "the SR in Orthanc")
    heatmap = dcmread(
        io.BytesIO(wait_for(lambda: _in_orthanc(stack, study_uid, "OT"), 30, 0.5, "the heatmap"))
    )
    assert heatmap.SamplesPerPixel == 3 and heatmap.pixel_array.ndim == 3  # the Grad-CAM overlay, in colour
    # A viewer's query finds the answer's series in the study (dcmtk's findscu against Orthanc).
    keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study_uid}", "-k", "Modality"]
    peer = ["-aet", "MEDTUNE", "-aec", stack.orthanc.ae_title, "127.0.0.1", str(stack.orthanc.dicom_port)]
    found = _dcmtk("findscu", "-S", *keys, *peer)
    assert (
        found.returncode == 0
        and "[SR]" in found.stderr + found.stdout
        and "[OT]" in found.stderr + found.stdout
    )
    from_sr = sr.read_probabilities(report)
    rest = stack.client.post(f"/v1/models/{name}/predict", content=data,
                             headers={**stack.headers, "Content-Type": "application/dicom"})  # fmt: skip
    assert rest.status_code == 200, rest.text
    probabilities = rest.json()["predictions"][0]["probabilities"]
    assert from_sr.keys() == probabilities.keys()
    assert all(from_sr[k] == pytest.approx(v, abs=1e-6) for k, v in probabilities.items())
    rest_sr = stack.client.post(f"/v1/models/{name}/predict?format=sr", content=data,
                                headers={**stack.headers, "Content-Type": "application/dicom"})  # fmt: skip
    assert rest_sr.headers["content-type"] == "application/dicom"
    assert sr.read_probabilities(rest_sr.content) == pytest.approx(from_sr, abs=1e-6)
    for answer in (report, rest_sr.content):
        assert dcmread(io.BytesIO(answer)).StudyInstanceUID == study_uid  # it references the original study
    events = call(stack.client, "GET", "/v1/audit-events", stack.headers)["data"]
    inferred = [e for e in events if e["action"] == "pacs.inference"]
    secret = stack.settings.resolved_secret()
    assert inferred and inferred[0]["details"] == {"study_key_hmac": key_hmac(secret, study_uid),
                                                   "model": f"{name}:1", "outcome": "sent"}  # fmt: skip
    # Nothing identified of the predicted study was kept: objects, database, worker log.
    _no_identifier_stored(stack, 700)
    kept = _database_text(stack) + stack.worker.output()
    for value in (study_uid, accession, f"{PLANTED['patient_id']}-700", f"{PLANTED['patient_name']}700"):
        assert value not in kept

"""The deployed mode end to end (issue 15): images built from the local base, the compose stack up
with the CI override, the flow through the API with predictions from the inference tier, a worker
killed mid-job, `down`/`up` on the volumes, and API and inference scaled to two replicas each.
The tests run in file order on one stack; each leaves it as the next expects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.labelled import call, create_job, labelled_split, wait_job
from tests.services import wait_for
from tests.stack.compose import Stack, run

DICOM = {"Content-Type": "application/dicom"}
state: dict[str, Any] = {}


def _predict(client: httpx.Client, model: str, dicom: bytes) -> dict[str, Any]:
    r = client.post(f"/v1/models/{model}/predict", headers=DICOM, content=dicom)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()["predictions"][0]
    return out


def _adapter_loads(stack: Stack) -> int:
    return sum(int(h["adapter_loads"]) for h in stack.tier_health())


def _inventory(client: httpx.Client) -> dict[str, list[str]]:
    return {
        kind: sorted(x["id"] for x in call(client, "GET", path, {})["data"])
        for kind, path in (
            ("datasets", "/v1/datasets"),
            ("jobs", "/v1/fine-tuning/jobs"),
            ("models", "/v1/models"),
        )
    }


def test_flow_through_the_api_and_the_inference_tier(stack: Stack, api: httpx.Client, workdir: Path) -> None:
    dataset_id, split_id = labelled_split(api, {}, workdir / "cxr", patients=8)
    job = create_job(api, {}, dataset_id, split_id)
    done = wait_job(api, {}, job["id"], timeout=600, log=lambda: stack.logs(tail=60))
    assert done["status"] == "succeeded", done.get("error")
    r = api.post("/v1/models", json={"job_id": job["id"], "name": "cxr-stack", "checkpoint": "best"})
    assert r.status_code == 201, r.text

    dicom = (workdir / "cxr" / "patient1.dcm").read_bytes()
    first = _predict(api, "cxr-stack", dicom)
    assert set(first["probabilities"]) == {"finding"}
    assert 0.0 <= first["probabilities"]["finding"] <= 1.0
    # The answer came from the inference tier: the API image has no torch to compute it with.
    no_torch = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    stack.exec("api", "python", "-c", no_torch)
    health = stack.tier_health()
    assert sum(h["requests"] for h in health) >= 1
    assert _predict(api, "cxr-stack", dicom)["probabilities"] == first["probabilities"]
    # Errors keep the platform's shape through the forwarding.
    bad = api.post("/v1/models/cxr-stack/predict", headers=DICOM, content=b"not a dicom file")
    assert 400 <= bad.status_code < 500 and "error" in bad.json(), bad.text

    body = {"dataset_id": dataset_id, "split_id": split_id, "split": "test"}
    batch = call(api, "POST", "/v1/models/cxr-stack/batch-predictions", {}, json=body)
    finished = wait_for(
        lambda: (b := call(api, "GET", f"/v1/models/batch-predictions/{batch['id']}", {}))["status"]
        in ("succeeded", "failed") and b,
        300, 1, what="the batch prediction",
    )  # fmt: skip
    assert finished["status"] == "succeeded" and finished["count"] >= 1, finished
    state.update(dataset_id=dataset_id, split_id=split_id, dicom=dicom, prediction=first)


def test_worker_killed_mid_job_resumes(stack: Stack, api: httpx.Client) -> None:
    # Thirty epochs of a tiny model, no early stopping: the run is still going when the worker dies.
    epochs = 30
    (worker,) = stack.containers("worker")
    job = create_job(
        api, {}, state["dataset_id"], state["split_id"], epochs=epochs, early_stopping_patience=epochs
    )
    checkpoints = f"/v1/fine-tuning/jobs/{job['id']}/checkpoints"
    wait_for(lambda: call(api, "GET", checkpoints, {})["data"], 600, 0.2, what="a first checkpoint")
    run(["docker", "kill", "--signal", "KILL", worker])  # at once: compose would first read its files
    at_kill = max(c["epoch"] for c in call(api, "GET", checkpoints, {})["data"])
    assert at_kill < epochs
    stack.up("worker")
    done = wait_job(api, {}, job["id"], timeout=600, log=lambda: stack.logs(tail=60))
    assert done["status"] == "succeeded", done.get("error")
    assert done["attempts"] >= 2
    events = call(api, "GET", f"/v1/fine-tuning/jobs/{job['id']}/events?limit=200", {})["data"]
    assert any(e["message"].startswith("resuming from the checkpoint") for e in events)
    # One checkpoint per epoch, none lost or repeated across the kill.
    assert [c["epoch"] for c in call(api, "GET", checkpoints, {})["data"]] == list(range(1, epochs + 1))


def test_down_and_up_keep_datasets_jobs_and_models(stack: Stack, api: httpx.Client) -> None:
    before = _inventory(api)
    assert all(before.values()), before
    stack.compose("down", timeout=300)
    assert not stack.containers()
    stack.up()
    api.base_url = httpx.URL(stack.api_urls()[0])
    assert _inventory(api) == before
    # The adapter comes back from the object store, not only the rows from PostgreSQL.
    assert _predict(api, "cxr-stack", state["dicom"])["probabilities"] == state["prediction"]["probabilities"]


def test_two_api_and_two_inference_replicas(stack: Stack, api: httpx.Client) -> None:
    stack.up("--scale", "inference=2", "inference")
    names = [stack.container_name(c) for c in stack.containers("inference")]
    assert len(names) == 2
    # Every API replica gets the same replica list, so all route a base model to the same replica.
    stack.env["MEDTUNE_INFERENCE_URLS"] = ",".join(f"http://{n}:8000" for n in sorted(names))
    stack.up("--no-deps", "--scale", "api=2", "api")
    urls = stack.api_urls()
    assert len(urls) == 2
    warm = []
    for url in urls:  # the first prediction may load the base and the adapter on the owning replica
        with httpx.Client(base_url=url, headers=api.headers, timeout=300) as client:
            warm.append(_predict(client, "cxr-stack", state["dicom"]))
    loads = _adapter_loads(stack)
    for _ in range(5):
        for url in urls:
            with httpx.Client(base_url=url, headers=api.headers, timeout=120) as client:
                got = _predict(client, "cxr-stack", state["dicom"])
                assert got["probabilities"] == warm[0]["probabilities"]
    # Ten more predictions through two APIs loaded no adapter again: the replica that owns the base
    # model on the ring holds it, hot.
    assert _adapter_loads(stack) == loads

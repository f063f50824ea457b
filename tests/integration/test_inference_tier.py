"""The deployed mode's inference tier: two real `medtune serve` processes and a live API forwarding to
them (MEDTUNE_INFERENCE_URLS). Forwarded predictions equal the in-process ones, the tier's errors keep
their shape, a tier that cannot be reached is a 503, each base model stays on its ring replica with its
adapters loaded once, and the forwarding API process never imports torch."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from platform_core.artifacts import ModelManifest
from platform_core.inference.routing import Ring, base_key
from tests.live import Live, live_platform
from tests.services import ROOT, free_port
from tests.tier import Tier, png, register_version, start_tier, stop, wait_healthy

pytestmark = [pytest.mark.services, pytest.mark.slow]

SIZE = 32


@dataclass
class Stack:
    live: Live
    tiers: list[Tier]
    versions: dict[str, ModelManifest]  # model name -> its version 1
    store: Any


def two_bases_on_two_replicas(urls: list[str]) -> tuple[int, int]:
    """Random-base seeds whose bases the ring gives to different replicas (the ring decides, not us)."""
    ring = Ring.build(urls)
    owner: dict[str, int] = {}
    for seed in range(64):
        key = f"test_vit|random-seed-{seed}|{SIZE}"  # base_key of such a version
        owner.setdefault(ring.node(key), seed)
        if len(owner) == 2:
            return owner[urls[0]], owner[urls[1]]
    raise AssertionError("64 bases all on one replica")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from platform_core.storage import open_store

    tmp = tmp_path_factory.mktemp("tier")
    data_dir = tmp / "data"
    objects = f"file://{data_dir / 'objects'}"
    tier_env = {"MEDTUNE_DATA_DIR": str(data_dir), "MEDTUNE_OBJECT_STORE_URL": objects,
                "MEDTUNE_BATCH_WINDOW_MS": "2"}  # fmt: skip
    tiers = [start_tier(tier_env, tmp / f"tier{i}.log") for i in range(2)]  # both import torch at once
    urls = [t.url for t in tiers]
    saved = os.environ.get("MEDTUNE_INFERENCE_URLS")
    os.environ["MEDTUNE_INFERENCE_URLS"] = ",".join(urls)  # the live API's Settings read it
    try:
        with live_platform(data_dir, worker=False) as live:
            _restore(saved)
            assert live.settings.inference_nodes == urls
            store = open_store(live.settings.object_store_url or "", live.settings)
            seeds = two_bases_on_two_replicas(urls)
            versions = {
                name: register_version(live.settings, store, live.project_id, name, seed)
                for name, seed in zip(("chest-a", "chest-b"), seeds, strict=True)
            }
            for tier in tiers:
                wait_healthy(tier)
            yield Stack(live, tiers, versions, store)
    finally:
        _restore(saved)
        for tier in tiers:
            stop(tier.proc)


def _restore(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("MEDTUNE_INFERENCE_URLS", None)
    else:
        os.environ["MEDTUNE_INFERENCE_URLS"] = saved


def in_process(stack: Stack, name: str, bodies: list[bytes], explain: bool = False) -> dict[str, Any]:
    """What the embedded API answers: serving.predict in this process, shaped by PredictOut."""
    from platform_core.inference import serving
    from platform_core.registry.schemas import PredictOut

    manifest = stack.versions[name]
    settings = stack.live.settings.model_copy(update={"inference_urls": ""})
    predictions = serving.predict(settings, stack.store, manifest, bodies, explain)
    out = PredictOut.model_validate({"model": name, "version": 1, "predictions": predictions})
    return out.model_dump(mode="json")


def api(stack: Stack, name: str, body: bytes, media: str = "image/png", **params: Any) -> httpx.Response:
    return httpx.post(f"{stack.live.url}/v1/models/{name}/predict", content=body, params=params,
                      headers={**stack.live.auth, "Content-Type": media}, timeout=60)  # fmt: skip


def test_forwarded_predictions_equal_the_in_process_ones(stack: Stack) -> None:
    for name in stack.versions:
        for seed in (1, 2):
            r = api(stack, name, png(seed))
            assert r.status_code == 200, r.text
            assert r.json() == in_process(stack, name, [png(seed)])
    images = [png(3), png(4), png(5)]
    instances = {"instances": [{"image_base64": base64.b64encode(b).decode()} for b in images]}
    r = api(stack, "chest-a", json.dumps(instances).encode(), "application/json")
    assert r.status_code == 200, r.text
    assert r.json() == in_process(stack, "chest-a", images)
    explained = api(stack, "chest-a", png(6), explain="true")
    assert explained.status_code == 200, explained.text
    [got] = explained.json()["predictions"]
    [want] = in_process(stack, "chest-a", [png(6)], True)["predictions"]
    assert got["heatmap_png_base64"] and got["probabilities"] == want["probabilities"]


def test_the_tiers_errors_keep_their_shape(stack: Stack) -> None:
    from platform_core.errors import PlatformError

    with pytest.raises(PlatformError) as embedded:
        in_process(stack, "chest-a", [b"\x89PNG but not really"])
    r = api(stack, "chest-a", b"\x89PNG but not really")
    assert r.status_code == embedded.value.status_code, r.text
    assert r.json() == {"error": {"type": embedded.value.type, "message": embedded.value.message,
                                  "param": embedded.value.param}}  # fmt: skip
    assert 400 <= r.status_code < 500
    assert api(stack, "no-such-model", png(1)).status_code == 404  # the API's own errors are unchanged


def test_each_base_stays_on_its_replica_and_adapters_load_once(stack: Stack) -> None:
    ring = Ring.build([t.url for t in stack.tiers])
    for _ in range(3):
        for name in stack.versions:
            assert api(stack, name, png(7)).status_code == 200
    for tier in stack.tiers:
        health = tier.health()
        mine = {m.id for m in stack.versions.values() if ring.node(base_key(m)) == tier.url}
        assert set(health["adapters"]) == mine, health  # the other replica's base never came here
        assert health["adapter_loads"] == len(mine) == 1, health  # loaded once, not per request
        assert health["base_loads"] == 1 and health["requests"] >= 3, health


def test_a_tier_that_cannot_be_reached_is_a_503(stack: Stack) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app

    nobody = f"http://127.0.0.1:{free_port()}"
    settings = stack.live.settings.model_copy(update={"inference_urls": nobody})
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models/chest-a/predict", content=png(1),
                        headers={**stack.live.auth, "Content-Type": "image/png"})  # fmt: skip
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "service_unavailable_error"
    assert "inference tier" in r.json()["error"]["message"]


TORCH_FREE_API = """
import json, sys
from fastapi.testclient import TestClient
from api.app import create_app
from platform_core.config import Settings
settings = Settings()
assert settings.inference_nodes, "forwarding is on"
with TestClient(create_app(settings)) as client:
    r = client.post("/v1/models/chest-b/predict", content=sys.stdin.buffer.read(),
                    headers={"Authorization": "Bearer " + sys.argv[1], "Content-Type": "image/png"})
    jobs = {name: client.post("/v1/fine-tuning/jobs", json={"dataset_id": "ds_none", "base_model": name},
                              headers={"Authorization": "Bearer " + sys.argv[1]})
            for name in ("resnet10t", "nosuchnet_v9")}  # outside the catalog: the tier infers them
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "peft", "torchvision"))
print(json.dumps({"status": r.status_code, "body": r.json(), "heavy": heavy,
                  "jobs": {name: [j.status_code, j.json()] for name, j in jobs.items()}}))
"""


def test_the_forwarding_api_process_imports_no_torch(stack: Stack) -> None:
    """A fresh API process with forwarding on answers a prediction and checks timm names outside the
    catalog without torch ever loading."""
    s = stack.live.settings
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(s.data_dir), "MEDTUNE_DATABASE_URL": s.db_url,
           "MEDTUNE_OBJECT_STORE_URL": s.object_store_url or "", "MEDTUNE_DEID_SECRET": s.deid_secret,
           "MEDTUNE_INFERENCE_URLS": ",".join(t.url for t in stack.tiers)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_API, stack.live.key], input=png(8), env=env,
                          cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert out["status"] == 200, out
    assert out["body"] == in_process(stack, "chest-b", [png(8)])
    assert out["heavy"] == [], out["heavy"][:10]
    # a timm name outside the catalog passes the base-model check (then the dataset is not found) ...
    status, body = out["jobs"]["resnet10t"]
    assert status == 404 and body["error"]["param"] != "base_model", body
    # ... and one timm cannot build is the catalog's own 422, inferred by the tier, not this process
    status, body = out["jobs"]["nosuchnet_v9"]
    assert status == 422 and body["error"]["param"] == "base_model", body
    assert "unknown base model 'nosuchnet_v9'" in body["error"]["message"]


def test_a_tier_with_a_token_refuses_callers_without_it(stack: Stack) -> None:
    from fastapi.testclient import TestClient

    from inference_server.app import create_app

    token = "t" * 40
    settings = stack.live.settings.model_copy(update={"inference_token": token})
    with TestClient(create_app(settings)) as tier:
        assert tier.get("/healthz").json()["status"] == "ok"  # the health check needs no token
        refused = tier.post("/v1/predict", content=b"\x00\x00\x00\x02{}")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        wrong = tier.post("/v1/predict", content=b"x", headers={"Authorization": "Bearer " + "u" * 40})
        assert wrong.status_code == 401
        framed = tier.post(
            "/v1/predict", content=b"\x00\x00\x00\x02{}", headers={"Authorization": f"Bearer {token}"}
        )
        assert framed.status_code == 400, framed.text  # past the token: a header without its fields
        assert framed.json()["error"]["type"] == "invalid_request_error"

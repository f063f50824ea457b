"""The deployed mode's inference tier: two real `medtune serve` processes and a live API forwarding to
them (MEDTUNE_INFERENCE_URLS). Forwarded predictions equal the in-process ones, the tier's errors keep
their shape, a tier that cannot be reached is a 503, each base model stays on its ring replica with its
adapters loaded once, and the forwarding API process never imports torch."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage

from platform_core.artifacts import ModelManifest
from platform_core.config import Settings
from platform_core.inference.routing import Ring, base_key
from tests.live import Live, live_platform
from tests.services import ROOT, free_port, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

SIZE = 32


@dataclass
class Tier:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=10).json()
        return out


@dataclass
class Stack:
    live: Live
    tiers: list[Tier]
    versions: dict[str, ModelManifest]  # model name -> its version 1
    store: Any


def start_tier(env: dict[str, str], log: Path) -> Tier:
    port = free_port()
    argv = [sys.executable, "-m", "medtune.cli.main", "serve", "--port", str(port), "--log-level", "warning"]
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stdout=fh, stderr=fh)
    return Tier(f"http://127.0.0.1:{port}", proc, log)


def wait_healthy(tier: Tier) -> None:
    def up() -> bool:
        assert tier.proc.poll() is None, tier.log.read_text()
        return httpx.get(f"{tier.url}/healthz", timeout=2).status_code == 200

    wait_for(up, 90, 0.2, f"the inference tier at {tier.url}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def register_version(settings: Settings, store: Any, project_id: str, name: str, seed: int) -> ModelManifest:
    """A ready version of a LoRA adapter on test_vit (random base of `seed`), written the way promotion
    writes one (safetensors in the store, manifest in the database): no training needed to serve it."""
    import hashlib

    import torch
    from safetensors.torch import save

    from platform_core.artifacts import ADAPTER_FILE, AdapterConfig, BaseWeights, Method
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.ids import new_id
    from platform_core.inference.preprocess import Preprocessing
    from platform_core.registry.models import ModelVersion, RegisteredModel
    from platform_core.training import catalog
    from platform_core.training.network import apply_method, create_backbone, trainable_state
    from platform_core.training.weights import RANDOM, ResolvedWeights

    entry = catalog.get("test_vit")
    torch.manual_seed(seed + 100)
    model = create_backbone(entry, 2, SIZE, ResolvedWeights(RANDOM, RANDOM, None))
    model = apply_method(model, entry, Method(r=4, alpha=8))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)  # off their init, so the adapter changes the answer
    data = save({k: v.contiguous() for k, v in trainable_state(model).items()})
    version_id, prefix = new_id("mv"), f"models/{name}/1"
    store.put_bytes(f"{prefix}/{ADAPTER_FILE}", data)
    adapter = AdapterConfig(
        base=BaseWeights("test_vit", "test_vit", "vit", RANDOM, None, seed=seed), method=Method(r=4, alpha=8),
        lora_targets=entry.lora_targets, classifier=entry.classifier, labels=("effusion", "nodule"),
        preprocessing=Preprocessing(SIZE, SIZE, (0.5,) * 3, (0.25,) * 3, SIZE),
        thresholds={"effusion": 0.4, "nodule": 0.6}, adapter_sha256=hashlib.sha256(data).hexdigest(),
        job_id="", epoch=0,
    )  # fmt: skip
    manifest = ModelManifest(
        adapter=adapter, id=version_id, model=name, version=1, prefix=prefix, thresholds_source="default",
        test_metrics=None, checkpoint_metric="val_auroc", split_id=None, split_sha256=None,
        dataset_id="ds_tier", dataset_version_id=None, mlflow_run_id=None,
    )  # fmt: skip
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as s:
        registered = RegisteredModel(id=new_id("model"), project_id=project_id, name=name, latest_number=1)
        s.add(registered)
        s.flush()
        s.add(ModelVersion(id=version_id, project_id=project_id, model_id=registered.id, number=1,
                           job_id=None, epoch=0, status="ready", manifest=manifest.to_json(), prefix=prefix,
                           adapter_sha256=adapter.adapter_sha256))  # fmt: skip
        s.commit()
    engine.dispose()
    return manifest


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


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 48), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


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
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "peft", "torchvision"))
print(json.dumps({"status": r.status_code, "body": r.json(), "heavy": heavy}))
"""


def test_the_forwarding_api_process_imports_no_torch(stack: Stack) -> None:
    """A fresh API process with forwarding on answers a prediction without torch ever loading."""
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

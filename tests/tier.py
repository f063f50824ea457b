"""The inference tier for tests and bench/infer.py: `medtune serve` processes, and ready model versions
written the way promotion writes them (no training), so a predict call has something real to serve."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image as PILImage

from platform_core.artifacts import ModelManifest
from platform_core.config import Settings
from tests.services import ROOT, free_port, stop_process, wait_for


@dataclass
class Tier:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=10).json()
        return out


def start_tier(env: dict[str, str], log: Path) -> Tier:
    """A `medtune serve` process on a free port (not waited for: start several, then wait_healthy)."""
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
    stop_process(proc, timeout=20)


def adapter_bytes(arch: str, size: int, seed: int) -> bytes:
    """A LoRA adapter's trainable state as training saves it, its weights moved off their init."""
    import torch
    from safetensors.torch import save

    from platform_core.artifacts import Method
    from platform_core.training import catalog
    from platform_core.training.network import apply_method, create_backbone, trainable_state
    from platform_core.training.weights import RANDOM, ResolvedWeights

    entry = catalog.get(arch)
    torch.manual_seed(seed + 100)
    model = create_backbone(entry, 2, size, ResolvedWeights(RANDOM, RANDOM, None))
    model = apply_method(model, entry, Method(r=4, alpha=8))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)
    return save({k: v.contiguous() for k, v in trainable_state(model).items()})


def register_version(
    settings: Settings,
    store: Any,
    project_id: str,
    name: str,
    seed: int,
    arch: str = "test_vit",
    size: int = 32,
) -> ModelManifest:
    """Version 1 of model `name`: a LoRA adapter on `arch` with a random base of `seed`, its weights in
    the store and its manifest in the database, status ready."""
    from platform_core.artifacts import ADAPTER_FILE, AdapterConfig, BaseWeights, Method
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.ids import new_id
    from platform_core.inference.preprocess import Preprocessing
    from platform_core.registry.models import ModelVersion, RegisteredModel
    from platform_core.training import catalog
    from platform_core.training.weights import RANDOM

    entry = catalog.get(arch)
    data = adapter_bytes(arch, size, seed)
    version_id, prefix = new_id("mv"), f"models/{name}/1"
    store.put_bytes(f"{prefix}/{ADAPTER_FILE}", data)
    adapter = AdapterConfig(
        base=BaseWeights(arch, entry.arch, entry.family, RANDOM, None, seed=seed),
        method=Method(r=4, alpha=8), lora_targets=entry.lora_targets, classifier=entry.classifier,
        labels=("effusion", "nodule"),
        preprocessing=Preprocessing(size, size, (0.5,) * 3, (0.25,) * 3, 32),
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


def png(seed: int, side: int = 48) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (side, side), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()

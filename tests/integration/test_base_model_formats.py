"""Foundation models in the formats they are published in, end to end on a real worker.

For each format a small model with random weights is built by the reference library itself and saved as
it is published. A job on the catalog entry fails fast with weights_unavailable naming those files;
registering them (POST /v1/base-models with `format`) makes the same job run; LoRA trains on the
converted timm model, the promoted version serves, and Grad-CAM returns a heatmap.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from tests.integration import test_jobs
from tests.integration.test_jobs import FAST, TERMINAL, Stack, _create, _wait

# test_jobs' fixtures (the ingested dataset, the stack with its real worker), used under their names
base = test_jobs.base
data = test_jobs.data
fs = test_jobs.fs
_worker_left_idle = test_jobs._worker_left_idle

pytestmark = [pytest.mark.services, pytest.mark.slow]


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.iterdir()):
            z.write(p, f"{folder.name}/{p.name}")
    return buf.getvalue()


def rad_dino_release(tmp: Path) -> tuple[str, bytes]:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14
    )
    Dinov2Model(config).save_pretrained(tmp / "tiny-rad-dino")
    return "tiny-rad-dino.zip", _zip_folder(tmp / "tiny-rad-dino")


def biomedclip_release(tmp: Path) -> tuple[str, bytes]:
    import open_clip

    vision = {"timm_model_name": "test_vit", "timm_pool": "", "timm_proj": "linear", "image_size": 160}
    text = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
    model_cfg = {"embed_dim": 16, "vision_cfg": vision, "text_cfg": text}
    folder = tmp / "tiny-biomedclip"
    folder.mkdir()
    torch.save(open_clip.CLIP(**model_cfg).state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
    return "tiny-biomedclip.zip", _zip_folder(folder)


def xrv_release(tmp: Path) -> tuple[str, bytes]:
    import torchxrayvision

    model = torchxrayvision.models.DenseNet(weights=None, growth_rate=8, block_config=(2, 2, 2, 2),
                                            num_init_features=16)  # fmt: skip
    buf = io.BytesIO()
    torch.save(model, buf)  # as the releases are: the pickled module
    return "tiny-xrv-densenet.pt", buf.getvalue()


CASES: dict[str, tuple[str, str, int, Callable[[Path], tuple[str, bytes]]]] = {
    # base model: (format, a file the error must name, image size, the release builder)
    "test_rad_dino": ("transformers", "config.json and model.safetensors", 56, rad_dino_release),
    "test_biomedclip": ("open_clip", "open_clip_pytorch_model.bin", 64, biomedclip_release),
    "test_xrv_densenet": ("torchxrayvision", "tiny-xrv-densenet.pt", 64, xrv_release),
}


def _png() -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (96, 96)).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _register(stack: Stack, name: str, fmt: str, filename: str, data_: bytes) -> dict[str, Any]:
    r = stack.client.post(
        "/v1/base-models",
        headers=stack.headers,
        data={"architecture": name, "name": f"{name}-published", "format": fmt},
        files={"file": (filename, data_, "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_a_published_checkpoint_registers_trains_serves_and_explains(
    fs: Stack, tmp_path: Path, name: str
) -> None:
    fmt, named_file, size, build = CASES[name]
    hp = {**FAST, "image_size": size}
    missing = _wait(
        fs, _create(fs, base_model=name, weights="pretrained", hyperparameters=hp)["id"], TERMINAL
    )
    assert missing["status"] == "failed" and missing["started_at"] is None
    assert missing["error"]["code"] == "weights_unavailable"
    assert named_file in missing["error"]["message"] and f"format={fmt}" in missing["error"]["message"]

    filename, release = build(tmp_path)
    registered = _register(fs, name, fmt, filename, release)
    assert registered["weights_format"] == fmt and registered["group"] == "tests"
    job = _create(fs, base_model=name, weights=registered["id"], hyperparameters=hp, suffix=name)
    done = _wait(fs, job["id"], TERMINAL, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["weights_sha256"] == registered["sha256"]

    model = f"{name.replace('_', '-')}-model"
    r = fs.client.post("/v1/models", headers=fs.headers, json={"job_id": job["id"], "name": model})
    assert r.status_code == 201, r.text
    png_headers = {**fs.headers, "Content-Type": "image/png"}
    r = fs.client.post(f"/v1/models/{model}/predict?explain=true", headers=png_headers, content=_png())
    assert r.status_code == 200, r.text
    prediction = r.json()["predictions"][0]
    assert 0 <= prediction["probabilities"]["finding"] <= 1
    assert base64.b64decode(prediction["heatmap_png_base64"]).startswith(b"\x89PNG")


def test_an_incomplete_published_folder_is_refused_naming_what_it_lacks(fs: Stack, tmp_path: Path) -> None:
    _filename, release = rad_dino_release(tmp_path)
    with zipfile.ZipFile(io.BytesIO(release)) as z:
        weights_only = io.BytesIO()
        with zipfile.ZipFile(weights_only, "w") as out:
            out.writestr("tiny-rad-dino/model.safetensors", z.read("tiny-rad-dino/model.safetensors"))
    r = fs.client.post(
        "/v1/base-models",
        headers=fs.headers,
        data={"architecture": "test_rad_dino", "name": "no-config", "format": "transformers"},
        files={"file": ("tiny.zip", weights_only.getvalue(), "application/zip")},
    )
    assert r.status_code == 422 and r.json()["error"]["param"] == "file"
    assert "lacks config.json" in r.json()["error"]["message"]


def test_the_catalog_lists_radiography_foundation_models_first_with_licenses(fs: Stack) -> None:
    from platform_core.training import catalog

    listed = fs.client.get("/v1/base-models", headers=fs.headers).json()["data"]
    by_id = {m["id"]: m for m in listed}
    radiography = {e.name for e in catalog.entries() if e.group == catalog.RADIOGRAPHY}
    assert {"rad_dino", "biomedclip_vit_base_patch16_224", "xrv_densenet121_res224_all", "medsiglip_448",
            "eva_x_small_patch16"} <= radiography  # fmt: skip
    first = listed[: len(radiography)]
    assert {m["id"] for m in first} == radiography
    assert {m["group"] for m in first} == {"radiography foundation models"}
    assert by_id["rad_dino"]["weights_files"] == ["config.json", "model.safetensors"]
    assert by_id["biomedclip_vit_base_patch16_224"]["license"] == "MIT"
    assert by_id["xrv_densenet121_res224_all"]["std"] == [1 / 2048] * 3
    assert "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k" in by_id


def test_any_timm_model_by_name_trains_and_an_unreadable_hub_id_is_a_422(
    fs: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    hp = {**FAST, "image_size": 64}
    done = _wait(
        fs, _create(fs, base_model="test_efficientnet", hyperparameters=hp)["id"], TERMINAL, timeout=240
    )
    assert done["status"] == "succeeded", done["error"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    body = {
        "dataset_id": fs.base.dataset_id,
        "base_model": "hf-hub:medtune-tests/absent",
        "weights": "random",
    }
    r = fs.client.post("/v1/fine-tuning/jobs", json=body, headers=fs.headers)
    assert r.status_code == 422 and r.json()["error"]["param"] == "base_model"
    assert "timm cannot build it here" in r.json()["error"]["message"]


def _in_process(stack: Stack) -> Any:
    """The API app in this process as the SDK's transport (responses read whole: the SDK streams sync)."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        r = stack.client._transport.handle_request(request)
        return httpx.Response(r.status_code, headers=r.headers, content=r.read())

    return httpx.MockTransport(handle)


def test_the_sdk_registers_a_published_release_and_reads_the_grouped_catalog(
    fs: Stack, tmp_path: Path
) -> None:
    import medtune

    filename, release = xrv_release(tmp_path)
    path = tmp_path / filename
    path.write_bytes(release)
    key = fs.headers["Authorization"].removeprefix("Bearer ")
    with medtune.Client("http://testserver", key, transport=_in_process(fs), max_retries=0) as sdk:
        entry = sdk.base_models.register("xrv-by-sdk", "test_xrv_densenet", path, format="torchxrayvision")
        listed = {e.id: e for e in sdk.base_models.list()}
    assert entry.weights.startswith("bm_") and entry.weights_format == "torchxrayvision"
    assert listed[entry.id].sha256 == entry.sha256
    rad_dino = listed["rad_dino"]
    assert (
        rad_dino.group == "radiography foundation models" and rad_dino.license and rad_dino.input_convention
    )

"""Adding a preprocessing field touches platform_core/artifacts.py (the `Preprocessing` dataclass) and the
step that uses it, nothing else.

A subclass with one more field stands in for the edited dataclass: the adapter config and the model
manifest carry it through their JSON unchanged, artifacts stored before it existed read with its
default, and the serving preprocessing takes the extended settings as they are.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from platform_core import artifacts
from platform_core.artifacts import AdapterConfig, BaseWeights, Method, ModelManifest, Preprocessing
from platform_core.inference import preprocess


@dataclass(frozen=True)
class WithGamma(Preprocessing):
    gamma: float = 1.0  # the new field, with the default older artifacts read as


PREP: dict[str, Any] = {
    "cache_size": 64,
    "image_size": 32,
    "mean": (0.5,) * 3,
    "std": (0.25,) * 3,
    "min_image_size": 32,
}


def _manifest(prep: Preprocessing) -> ModelManifest:
    adapter = AdapterConfig(
        base=BaseWeights("test_vit", "test_vit", "vit", "random", None, seed=3),
        method=Method("lora", 4, 8, 0.1),
        lora_targets=("qkv",),
        classifier="head",
        labels=("finding",),
        preprocessing=prep,
        thresholds={"finding": 0.4},
        adapter_sha256="a" * 64,
        job_id="ftjob_1",
        epoch=2,
    )
    fields: dict[str, Any] = {
        "id": "mv_1",
        "model": "chest",
        "version": 1,
        "prefix": "models/p/m/1",
        "thresholds_source": "validation",
        "test_metrics": {"macro": {"auroc": 0.9}},
        "checkpoint_metric": "val_auroc",
        "split_id": "split_1",
        "split_sha256": "b" * 64,
        "dataset_id": "ds_1",
        "dataset_version_id": "dv_1",
        "mlflow_run_id": None,
    }
    return ModelManifest(adapter, **fields)


def _stored(manifest: ModelManifest) -> dict[str, Any]:
    return dict(json.loads(json.dumps(manifest.to_json())))


@pytest.fixture
def new_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """platform_core/artifacts.py as it reads once the field is added."""
    monkeypatch.setattr(artifacts, "Preprocessing", WithGamma)


@pytest.mark.usefixtures("new_field")
def test_the_new_field_travels_in_the_adapter_config_and_the_manifest() -> None:
    manifest = _manifest(WithGamma(**PREP, gamma=0.8))
    stored = _stored(manifest)
    assert stored["preprocessing"]["gamma"] == 0.8
    assert ModelManifest.from_stored(stored) == manifest
    config = json.loads(json.dumps(manifest.adapter.to_json()))
    assert AdapterConfig.from_json(config).preprocessing == WithGamma(**PREP, gamma=0.8)


def test_an_artifact_stored_before_the_field_reads_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _stored(_manifest(Preprocessing(**PREP)))
    monkeypatch.setattr(artifacts, "Preprocessing", WithGamma)
    read = ModelManifest.from_stored(before)
    assert read.adapter.preprocessing == WithGamma(**PREP)
    assert isinstance(read.adapter.preprocessing, WithGamma) and read.adapter.preprocessing.gamma == 1.0


@pytest.mark.usefixtures("new_field")
def test_serving_preprocesses_with_the_extended_settings_as_they_are() -> None:
    png = io.BytesIO()
    Image.fromarray(np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) // 9).convert("L").save(png, "PNG")
    read = ModelManifest.from_stored(_stored(_manifest(WithGamma(**PREP, gamma=0.5)))).adapter.preprocessing
    x, grey = preprocess.preprocess(png.getvalue(), read)
    expected, _ = preprocess.preprocess(png.getvalue(), Preprocessing(**PREP))
    assert x.shape == (3, 32, 32) and grey.shape == (32, 32)
    assert torch.equal(x, expected)  # the field changes nothing until its step reads it

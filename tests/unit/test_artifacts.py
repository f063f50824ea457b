"""The artifact contract: each JSON round-trips, a missing key fails, an unknown one warns, and every
manifest shape stored so far reads back through ModelManifest.from_stored."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from platform_core.artifacts import (
    ADAPTER_FILE,
    AdapterConfig,
    ArtifactError,
    BaseWeights,
    Method,
    ModelManifest,
)
from platform_core.inference.preprocess import Preprocessing

PREP = Preprocessing(cache_size=64, image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _adapter(**changes: Any) -> AdapterConfig:
    fields: dict[str, Any] = {
        "base": BaseWeights("test_vit", "test_vit", "vit", "random", None, seed=3),
        "method": Method("lora", 4, 8, 0.1),
        "lora_targets": ("qkv",),
        "classifier": "head",
        "labels": ("finding",),
        "preprocessing": PREP,
        "thresholds": {"finding": 0.4},
        "adapter_sha256": "a" * 64,
        "job_id": "ftjob_1",
        "epoch": 2,
    }
    return AdapterConfig(**{**fields, **changes})


def _manifest(adapter: AdapterConfig | None = None) -> ModelManifest:
    return ModelManifest(adapter or _adapter(), "mv_1", "chest", 1, "models/p/m/1", "validation",
                         {"macro": {"auroc": 0.9}}, "val_auroc", "split_1", "b" * 64, "ds_1", "dv_1",
                         None)  # fmt: skip


@pytest.mark.parametrize(
    "adapter",
    [
        _adapter(),
        _adapter(base=BaseWeights("test_vit", "test_vit", "vit", "bm_1", "c" * 64, "bm/1", "safetensors")),
        _adapter(base=BaseWeights("test_vit", "test_vit", "vit", "pretrained", None), lora_targets=r".*qkv"),
        _adapter(method=Method("linear_probe"), labels=("a", "b"), thresholds={"a": 0.5, "b": 0.2}),
    ],
)
def test_each_json_round_trips(adapter: AdapterConfig) -> None:
    assert AdapterConfig.from_json(adapter.to_json()) == adapter
    manifest = _manifest(adapter)
    assert ModelManifest.from_json(manifest.to_json()) == manifest
    assert ModelManifest.from_stored(manifest.to_json()) == manifest


def test_the_manifest_keeps_its_stored_layout() -> None:
    d = _manifest().to_json()
    assert d["format"] == "medtune-model/1" and d["base"]["seed"] == 3
    assert d["method"] == {"type": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}
    assert d["adapter"] == {"files": {ADAPTER_FILE: "a" * 64}, "prefix": "models/p/m/1"}
    assert d["task"] == "binary" and d["epoch"] == 2 and d["split"] == {"id": "split_1", "sha256": "b" * 64}


def test_a_missing_key_fails_and_an_unknown_one_warns(caplog: pytest.LogCaptureFixture) -> None:
    d = _manifest().to_json()
    del d["preprocessing"]["cache_size"]
    with pytest.raises(ArtifactError, match="cache_size"):
        ModelManifest.from_json(d)
    config = _adapter().to_json()
    del config["labels"]
    with pytest.raises(ArtifactError, match="labels"):
        AdapterConfig.from_json(config)
    extra = {**_adapter().to_json(), "from_the_future": 1}
    with caplog.at_level(logging.WARNING, logger="medtune.artifacts"):
        assert AdapterConfig.from_json(extra) == _adapter()
    assert "from_the_future" in caplog.text


def test_an_old_manifest_reads_through_from_stored() -> None:
    old = _manifest().to_json()
    old["method"] = {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1}  # the flat shape
    del old["thresholds_source"], old["mlflow_run_id"]
    for key in ("min_image_size", "modalities", "burned_in_annotation"):
        del old["preprocessing"][key]
    with pytest.raises(ArtifactError):
        ModelManifest.from_json(old)
    read = ModelManifest.from_stored(old)
    assert read == _manifest()
    assert read.adapter.method == Method("lora", 4, 8, 0.1)
    assert read.adapter.preprocessing.modalities == ("CR", "DX")


def test_evaluation_updates_thresholds_and_metrics() -> None:
    pending = _manifest()
    done = pending.evaluated({"thresholds_source": "validation", "thresholds": {"finding": 0.3},
                              "test_metrics": {"macro": {"auroc": 0.8}}, "n_val": 5})  # fmt: skip
    assert done.adapter.threshold("finding") == 0.3 and done.thresholds_source == "validation"
    assert done.test_metrics == {"macro": {"auroc": 0.8}} and done.evaluation == {"n_val": 5}
    assert ModelManifest.from_json(done.to_json()) == done
    failed = pending.evaluated({"thresholds_source": "default", "error": "no labels"})
    assert failed.adapter.thresholds == pending.adapter.thresholds
    assert failed.test_metrics == pending.test_metrics and failed.evaluation == {"error": "no labels"}

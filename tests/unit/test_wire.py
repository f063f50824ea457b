"""What the API sends the inference tier: framed in memory, read back whole, and a bad frame is a 4xx."""

from __future__ import annotations

import json

import pytest

from platform_core.artifacts import AdapterConfig, BaseWeights, Method, ModelManifest, Preprocessing
from platform_core.errors import BadRequest, Invalid
from platform_core.inference import wire
from platform_core.training import catalog


def manifest() -> ModelManifest:
    adapter = AdapterConfig(
        base=BaseWeights("test_vit", "test_vit", "vit", "random", None, seed=3), method=Method(),
        lora_targets=("attn.qkv",), classifier="head", labels=("effusion",),
        preprocessing=Preprocessing(32, 32, (0.5,) * 3, (0.25,) * 3, 32), thresholds={"effusion": 0.5},
        adapter_sha256="0" * 64, job_id="job_1", epoch=2,
    )  # fmt: skip
    return ModelManifest(
        adapter=adapter, id="mv_1", model="chest", version=1, prefix="models/chest/1",
        thresholds_source="default", test_metrics=None, checkpoint_metric="val_auroc", split_id=None,
        split_sha256=None, dataset_id="ds_1", dataset_version_id=None, mlflow_run_id=None,
    )  # fmt: skip


def test_a_request_reads_back_whole() -> None:
    bodies = [b"\x89PNG first", b"", b"DICM" * 1000]
    got = wire.decode(wire.encode(manifest(), bodies, True), max_images=8)
    assert got.bodies == bodies and got.explain is True
    assert got.manifest.to_json() == manifest().to_json()


def frame(header: object, rest: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(4, "big") + raw + rest


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x00",
        b"\xff\xff\xff\xff{}",  # a header length past the body
        frame([1, 2]),
        frame("text"),
        frame({"sizes": [3]}, b"abc"),  # no manifest
        frame({"manifest": {"id": "x"}, "sizes": [3]}, b"abc"),  # not a manifest
        frame({"manifest": manifest().to_json(), "sizes": [4]}, b"abc"),  # sizes past the body
        frame({"manifest": manifest().to_json(), "sizes": [-1, 4]}, b"abc"),
    ],
)
def test_a_bad_frame_is_a_400(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        wire.decode(raw, max_images=8)


def test_more_images_than_served_is_a_422() -> None:
    raw = wire.encode(manifest(), [b"a"] * 3, False)
    with pytest.raises(Invalid, match="3 images"):
        wire.decode(raw, max_images=2)


def test_a_catalog_entry_reads_back_equal() -> None:
    for name in ("test_vit", "test_resnet"):
        entry = catalog.get(name)
        assert wire.entry_from_json(json.loads(json.dumps(wire.entry_to_json(entry)))) == entry

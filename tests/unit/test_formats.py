"""Published formats load through medtune into timm and compute what the publisher's library computes.

Each test builds a small model with random weights using the reference library itself, saves it the way
it is published, loads it through `formats.read.to_timm` and `models.create_backbone`, and compares the
features with the reference forward on the same input (max abs difference <= 1e-4 in fp32).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from platform_core.errors import Invalid
from platform_core.training import formats as F
from platform_core.training.catalog import BackboneEntry
from platform_core.training.data import Normalize
from platform_core.training.formats import xrv
from platform_core.training.formats.read import to_timm, unzip
from platform_core.training.network import create_backbone
from platform_core.training.weights import ResolvedWeights

TOL = 1e-4
# a small transformers config (Dinov2 takes its MLP width from mlp_ratio instead)
SMALL: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
VIT_TARGETS = ("attn.qkv", "attn.proj")


def folder_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def vit_entry(arch: str, size: int, **kwargs: Any) -> BackboneEntry:
    return BackboneEntry(
        f"small_{arch}", arch, size, (0.5,) * 3, (0.5,) * 3, VIT_TARGETS, "head", "vit", create_kwargs=kwargs
    )  # type: ignore[arg-type]


def load(entry: BackboneEntry, state: dict[str, torch.Tensor], num_labels: int = 2) -> torch.nn.Module:
    weights = ResolvedWeights("registered", "test", None, state)
    return create_backbone(entry, num_labels, entry.input_size, weights).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_transformers_dinov2_matches_the_reference(tmp_path: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(**SMALL, image_size=28, patch_size=14, layerscale_value=0.5)
    ref = Dinov2Model(config).eval()
    ref.save_pretrained(tmp_path)
    state = to_timm(F.TRANSFORMERS, folder_files(tmp_path))
    model = load(vit_entry("vit_small_patch14_dinov2", 28, embed_dim=32, depth=2, num_heads=2), state)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        expected = ref(pixel_values=x).last_hidden_state
        tokens = model.forward_features(x)
    assert max_diff(tokens, expected) <= TOL
    assert max_diff(model.forward_head(tokens, pre_logits=True), expected[:, 0]) <= TOL


def test_transformers_vit_matches_the_reference(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(**SMALL, image_size=32, patch_size=16)
    ref = ViTModel(config, add_pooling_layer=False).eval()
    ref.save_pretrained(tmp_path)
    state = to_timm(F.TRANSFORMERS, folder_files(tmp_path))
    entry = vit_entry(
        "vit_base_patch16_224",
        32,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        norm_eps=config.layer_norm_eps,
    )
    model = load(entry, state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(model.forward_features(x), ref(pixel_values=x).last_hidden_state) <= TOL


def siglip_entry(arch: str, **kwargs: Any) -> BackboneEntry:
    """timm's SigLIP ViT at the small config; transformers' SigLIP uses the tanh GELU."""
    return vit_entry(
        arch, 28, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, act_layer="gelu_tanh", **kwargs
    )


def test_transformers_siglip_vision_matches_the_reference(tmp_path: Path) -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    ref = SiglipVisionModel(SiglipVisionConfig(**SMALL, image_size=28, patch_size=14)).eval()
    ref.save_pretrained(tmp_path)
    model = load(
        siglip_entry("vit_base_patch16_siglip_224", patch_size=14),
        to_timm(F.TRANSFORMERS, folder_files(tmp_path)),
    )
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        out = ref(pixel_values=x)
        tokens = model.forward_features(x)
        assert max_diff(tokens, out.last_hidden_state) <= TOL
        assert max_diff(model.forward_head(tokens, pre_logits=True), out.pooler_output) <= TOL


def open_clip_release(tmp_path: Path, vision_cfg: dict[str, Any]) -> tuple[Any, dict[str, bytes]]:
    """A small CLIP built by open_clip, saved as the hub releases are (config json + .bin state dict)."""
    import open_clip

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": vision_cfg,
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    model = open_clip.CLIP(**model_cfg).eval()
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))
    return model, folder_files(tmp_path)


def test_open_clip_timm_trunk_matches_the_reference(tmp_path: Path) -> None:
    """BiomedCLIP's layout: a timm ViT under visual.trunk, a linear projection without bias."""
    vision = {
        "timm_model_name": "test_vit",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 160,
    }
    ref, files = open_clip_release(tmp_path, vision)
    state = to_timm(F.OPEN_CLIP, files)
    model = load(vit_entry("test_vit", 160), state)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        assert max_diff(model.forward_features(x), ref.visual.trunk.forward_features(x)) <= TOL
        embedding = load(vit_entry("test_vit", 160), state, num_labels=16)
        embedding.load_state_dict(state)  # the projection is the head: the whole image tower
        assert max_diff(embedding(x), ref.encode_image(x)) <= TOL


def test_open_clip_native_vit_matches_the_reference(tmp_path: Path) -> None:
    vision = {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16}
    ref, files = open_clip_release(tmp_path, vision)
    state = to_timm(F.OPEN_CLIP, files)
    entry = vit_entry("vit_base_patch16_clip_224", 32, embed_dim=32, depth=2, num_heads=2)
    model = load(entry, state, num_labels=16)
    model.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(model(x), ref.encode_image(x)) <= TOL


def xrv_reference_and_medtune(tmp_path: Path, **kwargs: Any) -> tuple[Any, torch.nn.Module, BackboneEntry]:
    import torchxrayvision

    ref = torchxrayvision.models.DenseNet(weights=None, **kwargs).eval()
    path = tmp_path / "release.pt"
    torch.save(ref, path)  # the releases are pickled modules, not state dicts
    entry = BackboneEntry(
        "xrv",
        "densenet121",
        64,
        (xrv.MEAN,) * 3,
        (xrv.STD,) * 3,
        r".*denselayer\d+\.conv[12]",
        "classifier",
        "cnn",
    )
    model = load(entry, to_timm(F.XRV, {"release.pt": path.read_bytes()}))
    return ref, model, entry


def test_torchxrayvision_densenet121_matches_the_reference_on_the_platforms_input(tmp_path: Path) -> None:
    ref, model, entry = xrv_reference_and_medtune(tmp_path)
    grey = torch.rand(2, 1, 64, 64)  # what the pixel cache yields: grey in [0, 1]
    with torch.no_grad():
        expected = ref.features2((2 * grey - 1) * 1024)  # torchxrayvision.datasets.normalize
        platform_input = Normalize(entry.mean, entry.std)(grey)
        assert platform_input.shape[1] == 3
        features = model.forward_head(model.forward_features(platform_input), pre_logits=True)
    assert max_diff(features, expected) <= TOL * float(expected.abs().max().clamp(min=1))


def test_a_torchxrayvision_state_dict_file_loads_too(tmp_path: Path) -> None:
    import torchxrayvision

    ref = torchxrayvision.models.DenseNet(weights=None)
    buf = io.BytesIO()
    torch.save(ref.state_dict(), buf)
    state = to_timm(F.XRV, {"weights.pt": buf.getvalue()})
    assert state[xrv.FIRST_CONV].shape[1] == 3
    assert torch.allclose(state[xrv.FIRST_CONV].sum(1, keepdim=True), ref.features.conv0.weight)


class Publisher(torch.nn.Module):
    """A publisher's class whose unpickling would run code; the reader must never call it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise AssertionError("the publisher's code ran")


def test_a_pickled_module_is_read_without_importing_its_classes() -> None:
    buf = io.BytesIO()
    torch.save(Publisher(), buf)
    from platform_core.training.formats.pickled import module_state_dict

    assert set(module_state_dict(buf.getvalue())) == {"lin.weight", "lin.bias"}


def test_a_zipped_save_pretrained_folder_reads_like_the_folder(tmp_path: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=14, patch_size=14)
    ).save_pretrained(tmp_path / "rad-dino")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in (tmp_path / "rad-dino").iterdir():
            z.write(p, f"rad-dino/{p.name}")
    files = unzip(buf.getvalue(), 10_000_000)
    assert set(files) == {"config.json", "model.safetensors"}
    assert set(to_timm(F.TRANSFORMERS, files)) == set(
        to_timm(F.TRANSFORMERS, folder_files(tmp_path / "rad-dino"))
    )


def test_missing_files_are_named() -> None:
    with pytest.raises(Invalid, match=r"config\.json and model\.safetensors \(or pytorch_model\.bin\)"):
        to_timm(F.TRANSFORMERS, {"model.safetensors": b""})
    with pytest.raises(Invalid, match="format must be one of"):
        F.check("keras")


def test_the_vision_half_of_a_full_siglip_checkpoint_loads(tmp_path: Path) -> None:
    """MedSigLIP is published as a whole SiglipModel (text tower too); only the image tower is kept."""
    from transformers import SiglipConfig, SiglipModel

    vision = {**SMALL, "image_size": 28, "patch_size": 14}
    ref = SiglipModel(SiglipConfig(vision_config=vision, text_config={**SMALL, "vocab_size": 64})).eval()
    ref.save_pretrained(tmp_path)
    model = load(
        siglip_entry("vit_so400m_patch14_siglip_224"), to_timm(F.TRANSFORMERS, folder_files(tmp_path))
    )
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        assert max_diff(features, ref.vision_model(pixel_values=x).pooler_output) <= TOL


def test_a_registered_upload_is_a_zipped_folder_or_the_bare_release_file(tmp_path: Path) -> None:
    import torchxrayvision

    from platform_core.training.formats.read import published_upload

    ref = torchxrayvision.models.DenseNet(weights=None)
    buf = io.BytesIO()
    torch.save(ref, buf)  # a torch file is a zip too: it must not be taken for a zipped folder
    assert xrv.FIRST_CONV in published_upload(F.XRV, buf.getvalue())
    vision = {"timm_model_name": "test_vit", "timm_pool": "", "timm_proj": "linear", "image_size": 160}
    _ref, files = open_clip_release(tmp_path, vision)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        for name, data in files.items():
            z.writestr(f"BiomedCLIP/{name}", data)
    assert set(published_upload(F.OPEN_CLIP, zipped.getvalue())) == set(to_timm(F.OPEN_CLIP, files))


def test_the_files_a_zipped_folder_lacks_are_named() -> None:
    assert F.missing_files(F.TRANSFORMERS, ["rad-dino/model.safetensors"]) == ["config.json"]
    assert F.missing_files(F.TRANSFORMERS, ["config.json", "model-00001-of-00002.safetensors"]) == []
    assert F.missing_files(F.OPEN_CLIP, ["open_clip_config.json"]) == ["open_clip_pytorch_model.bin"]
    with pytest.raises(Invalid, match="zip"):
        F.check_upload(F.TRANSFORMERS, "model.safetensors")


def test_an_eva_mim_checkpoint_with_its_training_arguments_loads_as_eva_x(tmp_path: Path) -> None:
    """EVA-X publishes EVA's MIM layout (mlp.w12/w3, norm, mask token, MIM head) beside the run's
    argparse.Namespace; timm's Eva with EVA-X's arguments is EVA-X's own model class."""
    import argparse

    import timm

    kwargs = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16, "ref_feat_shape": (2, 2)}
    ref = timm.create_model("eva02_small_patch14_224", img_size=32, num_classes=0, **kwargs).eval()
    renames = (("mlp.fc1", "mlp.w12"), ("mlp.fc2", "mlp.w3"), ("fc_norm.", "norm."))
    mim = {}
    for key, value in ref.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        mim[key] = value
    mim |= {
        "mask_token": torch.zeros(1, 1, 32),
        "lm_head.weight": torch.zeros(8, 32),
        "lm_head.bias": torch.zeros(8),
    }
    buf = io.BytesIO()
    torch.save({"model": mim, "args": argparse.Namespace(model="eva_x_small_patch16"), "epoch": 599}, buf)
    entry = BackboneEntry(
        "eva_x_tiny",
        "eva02_small_patch14_224",
        32,
        (0.49,) * 3,
        (0.29,) * 3,
        VIT_TARGETS,
        "head",
        "vit",
        create_kwargs=kwargs,
    )  # type: ignore[arg-type]
    model = load(entry, to_timm(F.TIMM, {"eva_x_small_patch16_merged520k_mim.pt": buf.getvalue()}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
        assert max_diff(model.forward_head(model.forward_features(x), pre_logits=True), expected) <= TOL

"""Published weights beside the conversions: fetched from the Hugging Face cache (sharded too) or a
release file, the files a weights_unavailable error names, and the catalog's architectures checked
tensor for tensor against the publishers' own configurations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from platform_core.training.data import Normalize
from platform_core.training.formats import xrv
from platform_core.training.network import create_backbone
from platform_core.training.weights import ResolvedWeights
from tests.unit.test_formats import SMALL, TOL, max_diff


def test_weights_unavailable_names_the_exact_files_to_bring() -> None:
    from platform_core.training import catalog
    from platform_core.training.weights import how_to_register

    rad_dino = how_to_register(catalog.get("rad_dino"))
    assert (
        "config.json and model.safetensors" in rad_dino
        and "https://huggingface.co/microsoft/rad-dino" in rad_dino
    )
    assert "format=transformers" in rad_dino and "architecture=rad_dino" in rad_dino
    xrv_entry = catalog.get("xrv_densenet121_res224_all")
    assert xrv_entry.weights_files[0] in how_to_register(xrv_entry)
    assert "format=torchxrayvision" in how_to_register(xrv_entry)
    timm_hub = how_to_register(catalog.get("vit_base_patch16_224"))
    assert (
        "model.safetensors from https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"
        in timm_hub
    )
    eva_x = how_to_register(catalog.get("eva_x_small_patch16"))
    assert "eva_x_small_patch16_merged520k_mim.pt from https://huggingface.co/MapleF/eva_x" in eva_x


def _into_hub_cache(cache: Path, repo: str, folder: Path) -> None:
    """The Hugging Face cache layout huggingface_hub writes: refs/main -> snapshots/<revision>/<files>."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for p in folder.iterdir():
        (snapshot / p.name).write_bytes(p.read_bytes())
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("0" * 40)


def test_pretrained_published_weights_load_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants
    from transformers import Dinov2Config, Dinov2Model

    from platform_core.training import catalog
    from platform_core.training.weights import PRETRAINED, pretrained_cached

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    entry = catalog.get("test_rad_dino")
    assert not pretrained_cached(entry)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14
    )
    ref = Dinov2Model(config).eval()
    ref.save_pretrained(tmp_path / "published")
    _into_hub_cache(tmp_path / "hub", "medtune-tests/tiny-rad-dino", tmp_path / "published")
    assert pretrained_cached(entry)
    model = create_backbone(entry, 2, 28, ResolvedWeights(PRETRAINED, "hub", None)).eval()
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert max_diff(model.forward_features(x), ref(pixel_values=x).last_hidden_state) <= TOL


def test_pretrained_torchxrayvision_release_loads_from_beside_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchxrayvision
    from huggingface_hub import constants

    from platform_core.training import catalog
    from platform_core.training.weights import PRETRAINED, release_path

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    entry = catalog.get("test_xrv_densenet")
    ref = torchxrayvision.models.DenseNet(
        weights=None, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16
    )
    path = release_path(entry)
    path.parent.mkdir(parents=True)
    torch.save(ref.eval(), path)
    model = create_backbone(entry, 2, 64, ResolvedWeights(PRETRAINED, "release", None)).eval()
    grey = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = ref.features2((2 * grey - 1) * 1024)
        x = Normalize(entry.mean, entry.std)(grey)
        features = model.forward_head(model.forward_features(x), pre_logits=True)
    assert max_diff(features, expected) <= TOL * float(expected.abs().max().clamp(min=1))


def test_a_sharded_checkpoint_in_the_hub_cache_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants
    from transformers import Dinov2Config, Dinov2Model

    from platform_core.training import catalog
    from platform_core.training.weights import PRETRAINED, cached_files

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = Dinov2Model(Dinov2Config(**SMALL, image_size=28, patch_size=14)).eval()
    ref.save_pretrained(tmp_path / "published", max_shard_size="20KB")
    assert (tmp_path / "published" / "model.safetensors.index.json").is_file()
    _into_hub_cache(tmp_path / "hub", "medtune-tests/tiny-rad-dino", tmp_path / "published")
    entry = catalog.get("test_rad_dino")
    files = cached_files(entry)
    assert files is not None and len([n for n in files if n.startswith("model-")]) > 1
    model = create_backbone(entry, 2, 28, ResolvedWeights(PRETRAINED, "hub", None)).eval()
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert max_diff(model.forward_features(x), ref(pixel_values=x).last_hidden_state) <= TOL


# --- the catalog's architectures against the publishers' own configurations, tensor shapes only ---------


def _timm_shapes(name: str) -> dict[str, tuple[int, ...]]:
    import timm

    from platform_core.training import catalog

    entry = catalog.get(name)
    with torch.device("meta"):
        size = {"img_size": entry.input_size} if entry.family == "vit" else {}
        model = timm.create_model(entry.arch, num_classes=2, **size, **entry.create_kwargs)
    return {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(entry.classifier + ".")
    }


def _converted_shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.startswith("head.")}


def test_rad_dino_is_the_published_dinov2_configuration() -> None:
    from transformers import Dinov2Config, Dinov2Model

    from platform_core.training.formats import hf_transformers

    # microsoft/rad-dino's config.json: ViT-B/14 at 518 px, layer scale, GELU MLP
    config = Dinov2Config(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=14, image_size=518
    )
    with torch.device("meta"):
        published = Dinov2Model(config).state_dict()
    assert _converted_shapes(hf_transformers.convert(published, config.to_dict())) == _timm_shapes("rad_dino")


def test_medsiglip_is_the_published_so400m_configuration() -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from platform_core.training.formats import hf_transformers

    # google/medsiglip-448's vision_config: So400m/14 at 448 px
    config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                num_attention_heads=16, patch_size=14, image_size=448)  # fmt: skip
    with torch.device("meta"):
        published = SiglipVisionModel(config).state_dict()
    converted = _converted_shapes(hf_transformers.convert(published, config.to_dict()))
    assert converted == _timm_shapes("medsiglip_448")


def test_torchxrayvision_densenet121_is_the_released_configuration() -> None:
    import torchxrayvision

    released = torchxrayvision.models.DenseNet(weights=None).state_dict()  # densenet121's blocks, one channel
    converted = {
        k: tuple(v.shape) for k, v in xrv.convert(released).items() if not k.startswith("classifier.")
    }
    assert converted == _timm_shapes("xrv_densenet121_res224_all")


@pytest.mark.parametrize(
    ("size", "dims"),
    [
        ("tiny", {"embed_dim": 192, "num_heads": 3}),
        ("small", {"embed_dim": 384, "num_heads": 6}),
        ("base", {"embed_dim": 768, "num_heads": 12, "qkv_fused": False, "scale_mlp": True}),
    ],
)
def test_eva_x_is_eva_x_own_eva_configuration(size: str, dims: dict[str, object]) -> None:
    from timm.models.eva import Eva

    # hustvl/EVA-X eva_x.py, eva_x_{size}_patch16: timm's Eva with these arguments
    with torch.device("meta"):
        eva_x = Eva(
            img_size=224,
            patch_size=16,
            depth=12,
            mlp_ratio=4 * 2 / 3,
            swiglu_mlp=True,
            use_rot_pos_emb=True,
            ref_feat_shape=(14, 14),
            num_classes=2,
            **dims,
        )  # type: ignore[arg-type]
    shapes = {k: tuple(v.shape) for k, v in eva_x.state_dict().items() if not k.startswith("head.")}
    assert shapes == _timm_shapes(f"eva_x_{size}_patch16")

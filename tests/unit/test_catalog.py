"""The backbone catalog: the issue's entries exist, they build in timm, duplicates are refused."""

from __future__ import annotations

import pytest

from platform_core.errors import Invalid
from platform_core.training import catalog

REQUIRED = [
    "vit_base_patch16_224", "vit_small_patch16_224", "eva02_base_patch14_224", "vit_small_patch14_dinov2",
    "densenet121", "resnet50", "convnext_tiny", "test_vit", "test_resnet",
    "eva02_base_patch14_448.mim_in22k_ft_in22k_in1k", "rad_dino", "biomedclip_vit_base_patch16_224",
    "xrv_densenet121_res224_all", "medsiglip_448", "eva_x_tiny_patch16", "eva_x_small_patch16",
    "eva_x_base_patch16",
]  # fmt: skip
RADIOGRAPHY = ["rad_dino", "biomedclip_vit_base_patch16_224", "xrv_densenet121_res224_all", "medsiglip_448",
               "eva_x_tiny_patch16", "eva_x_small_patch16", "eva_x_base_patch16"]  # fmt: skip


def test_required_entries_are_registered() -> None:
    assert set(REQUIRED) <= set(catalog.names())
    for name in REQUIRED:
        entry = catalog.get(name)
        assert entry.input_size > 0 and len(entry.mean) == 3 and len(entry.std) == 3
        assert entry.lora_targets and entry.classifier


def test_duplicates_are_refused() -> None:
    entry = catalog.get("test_vit")
    with pytest.raises(ValueError, match="already registered"):
        catalog.register(entry)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(Invalid, match="test_vit"):
        catalog.get("no_such_model")


@pytest.mark.parametrize("name", REQUIRED)
def test_targets_and_classifier_exist_in_the_timm_model(name: str) -> None:
    import re

    import timm
    import torch

    entry = catalog.get(name)
    kwargs = dict(entry.create_kwargs)
    if entry.family == "vit":
        kwargs["img_size"] = entry.input_size
    with torch.device("meta"):  # no memory, no weights: only the module tree
        model = timm.create_model(entry.arch, pretrained=False, num_classes=2, **kwargs)
    modules = dict(model.named_modules())
    assert entry.classifier in modules
    if isinstance(entry.lora_targets, str):
        hits = [n for n in modules if re.fullmatch(entry.lora_targets, n)]
    else:
        hits = [n for n in modules if any(n == t or n.endswith("." + t) for t in entry.lora_targets)]
    assert len(hits) >= 4
    assert all(isinstance(modules[h], torch.nn.Linear | torch.nn.Conv2d) for h in hits)


@pytest.mark.parametrize("name", RADIOGRAPHY)
def test_radiography_entries_say_where_their_weights_are_and_under_which_license(name: str) -> None:
    entry = catalog.get(name)
    assert entry.group == catalog.RADIOGRAPHY
    assert entry.loads_published  # fetched file by file and converted, not by timm's own loader
    assert entry.license and entry.pretraining and entry.input_convention
    assert entry.weights_files and entry.weights_source.startswith("https://")


def test_entries_list_radiography_models_first_then_general_vision() -> None:
    groups = [e.group for e in catalog.entries()]
    assert groups == sorted(groups, key=catalog.GROUPS.index)
    assert groups[0] == catalog.RADIOGRAPHY and catalog.GENERAL in groups


def test_torchxrayvision_normalisation_is_its_minus_1024_to_1024_range() -> None:
    entry = catalog.get("xrv_densenet121_res224_all")
    for x in (0.0, 0.25, 1.0):  # a grey value in [0, 1], as the pixel cache yields it
        assert (x - entry.mean[0]) / entry.std[0] == pytest.approx((2 * x - 1) * 1024)
    assert entry.weights_files == (entry.weights_url.rsplit("/", 1)[-1],)  # type: ignore[union-attr]


def test_the_files_to_bring_follow_the_published_format() -> None:
    assert catalog.get("rad_dino").weights_files == ("config.json", "model.safetensors")
    assert catalog.get("biomedclip_vit_base_patch16_224").weights_files == ("open_clip_pytorch_model.bin",)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(Invalid, match="format must be one of"):
        catalog.BackboneEntry("x", "x", 1, (0.5,) * 3, (0.5,) * 3, "x", "head", "vit", weights_format="keras")


# --- any timm model by name or hf-hub id -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family", "classifier", "a_target"),
    [
        ("resnet18", "cnn", "fc", "layer2.0.conv1"),
        ("test_vit2", "vit", "head", "blocks.0.attn.qkv"),
        ("test_convnext", "cnn", "head.fc", "stages.0.blocks.0.mlp.fc1"),
        ("test_efficientnet", "cnn", "classifier", "blocks.1.0.conv_pwl"),
    ],
)
def test_a_timm_model_outside_the_catalog_gets_inferred_targets_and_classifier(
    name: str, family: str, classifier: str, a_target: str
) -> None:
    from platform_core.training.network import MethodConfig, build_model
    from platform_core.training.weights import RANDOM, ResolvedWeights

    entry = catalog.get(name)
    assert (entry.family, entry.classifier, entry.arch) == (family, classifier, name)
    assert name not in catalog.names()
    model = build_model(
        entry, 2, MethodConfig("lora", r=2, alpha=4), ResolvedWeights(RANDOM, RANDOM, None), 64
    )
    lora = {n.split(".lora_A")[0].removeprefix("base_model.model.") for n, _ in model.named_parameters()
            if ".lora_A" in n}  # fmt: skip
    assert a_target in lora
    # frozen: the stem, downsampling paths and the classifier itself never get LoRA matrices
    assert not any(part in n for n in lora for part in ("downsample", "stem", "conv_stem", classifier + "."))
    assert model(__import__("torch").zeros(1, 3, 64, 64)).shape == (1, 2)


def test_an_unknown_name_is_a_422_that_lists_the_catalog() -> None:
    with pytest.raises(Invalid, match="no such timm architecture.*the catalog has: .*rad_dino") as err:
        catalog.get("resnet_999")
    assert err.value.status_code == 422 and err.value.param == "base_model"


def test_an_hf_hub_id_that_cannot_be_read_is_a_422_naming_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(Invalid, match="hf-hub:medtune-tests/absent.*timm cannot build it here") as err:
        catalog.get("hf-hub:medtune-tests/absent")
    assert err.value.param == "base_model"


def test_a_module_without_targets_infers_none() -> None:
    from torch import nn

    from platform_core.training.inferred import _lora_targets

    assert _lora_targets(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), "1") is None

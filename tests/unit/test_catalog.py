"""The backbone catalog: the issue's entries exist, they build in timm, duplicates are refused."""

from __future__ import annotations

import pytest

from platform_core.errors import Invalid
from platform_core.training import catalog

REQUIRED = [
    "vit_base_patch16_224", "vit_small_patch16_224", "eva02_base_patch14_224", "vit_small_patch14_dinov2",
    "densenet121", "resnet50", "convnext_tiny", "test_vit", "test_resnet",
]  # fmt: skip


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

"""Catalog entries for any timm model: a timm name or an `hf-hub:` id, inferred from its module tree.

The model is built on the meta device (no memory, no weights); its pretrained config gives the input
size, mean, std, classifier and hub id; the LoRA targets are found in its structure: the attention
projections of a transformer, else the linear layers inside its blocks (MLP mixers, ConvNeXt), else
the ungrouped convolutions inside its stages (stem, downsampling and depthwise convolutions stay frozen).
When the classifier or the targets cannot be found the answer is a 422 that says which.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import timm
import torch
from torch import nn

from platform_core.errors import Invalid
from platform_core.training.catalog import GENERAL, BackboneEntry

_FROZEN = r"(^|\.)(stem|downsample|shortcut|patch_embed|conv_stem|conv_head)(\.|$)"
_FROZEN_PARTS = re.compile(_FROZEN)


class NotATimmModel(Invalid):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"unknown base model '{name}': not in the catalog, and timm cannot build it here "
                         f"({why})", param="base_model")  # fmt: skip


def _build(name: str) -> nn.Module:
    if not name.startswith("hf-hub:") and not timm.is_model(name.split(".", 1)[0]):
        raise NotATimmModel(name, "no such timm architecture")
    try:
        with torch.device("meta"):
            model: nn.Module = timm.create_model(name, pretrained=False, num_classes=2)
    except Exception as exc:  # a hub config that cannot be read offline, a bad pretrained tag, ...
        raise NotATimmModel(name, f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return model


def _classifier(name: str, model: nn.Module, cfg: dict[str, Any]) -> str:
    head = cfg.get("classifier")
    modules = dict(model.named_modules())
    if not isinstance(head, str) or not isinstance(modules.get(head), nn.Linear):
        raise Invalid(
            f"the classifier of '{name}' cannot be inferred (timm names '{head}', not a linear layer)",
            param="base_model",
        )
    return head


def _lora_targets(model: nn.Module, head: str) -> tuple[str, ...] | str | None:
    named = [(n, m) for n, m in model.named_modules() if n and not n.startswith(head)]
    linear = [n for n, m in named if isinstance(m, nn.Linear) and "." in n and not _FROZEN_PARTS.search(n)]
    attention = [n for n in linear if ".attn." in f".{n}" and "attn_pool" not in n]
    for chosen in (attention, linear):
        if chosen:
            return tuple(sorted({".".join(n.split(".")[-2:]) for n in chosen}))
    convs = [
        n for n, m in named
        if isinstance(m, nn.Conv2d) and m.groups == 1 and "." in n and not _FROZEN_PARTS.search(n)
    ]  # fmt: skip
    if not convs:
        return None
    leaves = "|".join(sorted({re.escape(n.rsplit(".", 1)[1]) for n in convs}))
    pattern = rf"(?!.*{_FROZEN}).*\.({leaves})"
    # the leaf names must not also catch a frozen or grouped convolution; else list the modules themselves
    hits = {n for n, _ in named if re.fullmatch(pattern, n)}
    return pattern if hits == set(convs) else tuple(convs)


def _family(model: nn.Module) -> str:
    """ "vit" where training may change the image size and Grad-CAM reads the token grid (timm's ViT
    layout: patch_embed, blocks, prefix tokens); anything else is treated as a CNN at its input size."""
    vit_like = all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))
    return "vit" if vit_like and hasattr(model.get_submodule("patch_embed"), "grid_size") else "cnn"


@cache
def entry_for(name: str) -> BackboneEntry:
    """The catalog entry of a timm model that is not in the catalog (cached per process)."""
    model = _build(name)
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    head = _classifier(name, model, cfg)
    targets = _lora_targets(model, head)
    if not targets:
        raise Invalid(f"the LoRA targets of '{name}' cannot be inferred from its modules; "
                      "use method.type 'full' or 'linear_probe'", param="base_model")  # fmt: skip
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    mean = tuple(float(v) for v in cfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(float(v) for v in cfg.get("std") or (0.229, 0.224, 0.225))
    hub = name.removeprefix("hf-hub:") if name.startswith("hf-hub:") else cfg.get("hf_hub_id")
    return BackboneEntry(
        name, name, size, mean, std, targets, head,  # type: ignore[arg-type]
        _family(model), hub,
        f"{type(model).__name__} from timm; LoRA targets and classifier inferred from its modules",
        group=GENERAL,
    )  # fmt: skip

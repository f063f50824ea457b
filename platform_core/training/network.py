"""Building the network: a timm backbone with its weights, then LoRA (peft), full or linear-probe training.

The trainable part (LoRA matrices + classifier, or everything) plus buffers is what a checkpoint and an
exported adapter hold; the frozen backbone is rebuilt from the same weights (same sha256) on load.
"""

from __future__ import annotations

import logging
import sys
from functools import partial
from typing import Any

import timm
import torch
from torch import nn

from platform_core.artifacts import Method
from platform_core.training.catalog import BackboneEntry
from platform_core.training.weights import (
    PRETRAINED,
    RANDOM,
    ResolvedWeights,
    WeightsUnavailable,
    load_published,
    unavailable_message,
)

log = logging.getLogger("medtune.training")

# How the backbone is adapted: the artifacts' Method, so what trains is what the adapter config says.
MethodConfig = Method


def _create(entry: BackboneEntry, num_labels: int, image_size: int, pretrained: bool) -> nn.Module:
    kwargs: dict[str, Any] = dict(entry.create_kwargs)
    if "norm_eps" in kwargs:  # the catalog stays torch-free: a LayerNorm epsilon is given as a number
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=float(kwargs.pop("norm_eps")))
    if entry.family == "vit":
        kwargs["img_size"] = image_size
    model: nn.Module = timm.create_model(entry.arch, pretrained=pretrained, num_classes=num_labels, **kwargs)
    return model


def create_backbone(
    entry: BackboneEntry, num_labels: int, image_size: int, weights: ResolvedWeights
) -> nn.Module:
    if weights.kind == PRETRAINED and entry.loads_published:
        # transformers / open_clip / TorchXRayVision / EVA-X releases: converted to timm's layout, loaded
        weights = ResolvedWeights(weights.kind, weights.source, weights.sha256, load_published(entry))
    elif weights.kind == PRETRAINED:
        try:
            return _create(entry, num_labels, image_size, pretrained=True)
        except Exception as exc:  # offline hub, missing cache, HTTP errors: all mean "not here"
            raise WeightsUnavailable(unavailable_message(entry, f"{type(exc).__name__}")) from None
    model = _create(entry, num_labels, image_size, pretrained=False)
    if weights.kind == RANDOM or weights.state_dict is None:
        return model
    load_backbone_weights(model, entry, weights.state_dict)
    return model


def load_backbone_weights(model: nn.Module, entry: BackboneEntry, state: dict[str, torch.Tensor]) -> None:
    """Load a registered checkpoint: the classifier is replaced, anything else missing is an error."""
    # timm's own per-architecture filter converts foreign layouts and resamples position embeddings.
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(dict(state), model)
        except Exception as exc:
            raise WeightsUnavailable(f"the registered weights do not fit '{entry.name}': {exc}") from None
    own = model.state_dict()
    head = entry.classifier + "."
    fitting = {
        k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith(head)
    }
    missing = [k for k in own if k not in fitting and not k.startswith(head)]
    if missing:
        raise WeightsUnavailable(
            f"the registered weights do not fit '{entry.name}': {len(missing)} tensors missing or of another "
            f"shape (first: {', '.join(missing[:3])})"
        )
    unused = [k for k in state if k not in fitting and not k.startswith(head)]
    if unused:
        log.warning(
            "ignoring %d unknown tensors in the registered weights (first: %s)", len(unused), unused[:3]
        )
    model.load_state_dict(fitting, strict=False)


def apply_method(model: nn.Module, entry: BackboneEntry, method: MethodConfig) -> nn.Module:
    if method.type == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method.type == "linear_probe":
        classifier = model.get_submodule(entry.classifier)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in classifier.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets: list[str] | str = (
        entry.lora_targets if isinstance(entry.lora_targets, str) else list(entry.lora_targets)
    )
    config = LoraConfig(
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=targets,
        modules_to_save=[entry.classifier],
    )
    peft_model: nn.Module = get_peft_model(model, config)
    return peft_model


def build_model(
    entry: BackboneEntry,
    num_labels: int,
    method: MethodConfig,
    weights: ResolvedWeights,
    image_size: int | None = None,
    gradient_checkpointing: bool = False,
) -> nn.Module:
    backbone = create_backbone(entry, num_labels, image_size or entry.input_size, weights)
    setter = getattr(backbone, "set_grad_checkpointing", None)
    if gradient_checkpointing and callable(setter):
        setter(True)
    return apply_method(backbone, entry, method)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus buffers (BatchNorm statistics move even when weights are frozen)."""
    params = dict(model.named_parameters())
    return {
        k: v.detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
        if k not in params or params[k].requires_grad
    }


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Fail on trainable tensors the state lacks; warn on tensors the model does not know."""
    expected = trainable_state(model).keys()
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(f"the adapter lacks {len(missing)} tensors (first: {', '.join(missing[:3])})")
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        log.warning("ignoring %d unknown tensors in the adapter (first: %s)", len(unknown), unknown[:3])
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total

"""The backbone catalog: timm architectures with their preprocessing, LoRA targets and classifier.

Entries are dataclasses registered by name, like timm's own registry; a duplicate name is refused.
Each records where its weights are published and in which format (`formats`): foundation models
published as transformers, open_clip or TorchXRayVision checkpoints are converted to the entry's timm
architecture, so training and serving see only timm modules. The entry's fields are in
backbone_entry.py, the entries medtune ships in backbones.py. This module imports no torch, so the
API can list base models without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from platform_core.errors import Invalid
from platform_core.training.backbone_entry import GENERAL, GROUPS, RADIOGRAPHY, TESTS, BackboneEntry
from platform_core.training.backbones import BUILT_IN

__all__ = [
    "GENERAL",
    "GROUPS",
    "RADIOGRAPHY",
    "TESTS",
    "BackboneEntry",
    "entries",
    "get",
    "names",
    "register",
]

_REGISTRY: dict[str, BackboneEntry] = {}
# a timm architecture (with an optional pretrained tag) or a Hugging Face hub id
_TIMM_NAME = re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_]+)?|hf-hub:[\w.-]+/[\w.-]+")
# Who infers entries for names outside the catalog: timm in this process (None), or, in an API that
# forwards to the inference tier, the tier (api.forward installs it): that API never loads torch.
_infer: Callable[[str], BackboneEntry] | None = None


def infer_with(resolver: Callable[[str], BackboneEntry] | None) -> Callable[[str], BackboneEntry] | None:
    """Install a resolver (None: timm again); the one it replaces, to put back later."""
    global _infer
    previous, _infer = _infer, resolver
    return previous


def register(entry: BackboneEntry) -> BackboneEntry:
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone '{entry.name}' is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> BackboneEntry:
    """A catalog entry by name; any other timm name or `hf-hub:` id gets an entry inferred from its
    modules (that imports timm, so only names outside the catalog need torch here)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if not _TIMM_NAME.fullmatch(name):
        known = ", ".join(sorted(_REGISTRY))
        raise Invalid(f"unknown base model '{name}'; known: {known}", param="base_model")
    if _infer is not None:
        return _infer(name)
    from platform_core.training import inferred

    try:
        return inferred.entry_for(name)
    except inferred.NotATimmModel as exc:
        known = ", ".join(sorted(_REGISTRY))
        raise Invalid(f"{exc.message}; the catalog has: {known}", param="base_model") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def entries() -> list[BackboneEntry]:
    """Every entry, radiography foundation models first, then general vision, then the test models."""
    return sorted(_REGISTRY.values(), key=lambda e: (GROUPS.index(e.group), e.name))


for _entry in BUILT_IN:
    register(_entry)

"""Where a backbone's starting weights come from: timm's hub, a registered checkpoint, or random.

`"pretrained"` uses timm's hub weights when they can be had (cached or downloadable); a base model id
(`bm_...`) names a checkpoint a user registered with POST /v1/base-models (safetensors or .pth in the
object store, verified by sha256); `"random"` is explicit. Torch is imported lazily: the API lists
availability from here without it.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from platform_core.errors import Invalid
from platform_core.training.catalog import BackboneEntry

if TYPE_CHECKING:
    import torch

    from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.training")

PRETRAINED = "pretrained"
RANDOM = "random"
BASE_MODEL_PREFIX = "bm_"
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class WeightsUnavailable(Invalid):
    code = "weights_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="weights")


def how_to_register(entry: BackboneEntry) -> str:
    return (
        f"register the weights for '{entry.name}' once with POST /v1/base-models "
        f"(multipart: architecture={entry.name}, name=<any>, file=<.safetensors or .pth>) and create the job "
        f"with weights=<the returned base model id>; or use weights='random' for a trial without pretraining"
    )


def unavailable_message(entry: BackboneEntry, why: str) -> str:
    return f"pretrained weights for '{entry.name}' cannot be had here ({why}); {how_to_register(entry)}"


def pretrained_cached(entry: BackboneEntry) -> bool:
    """Whether timm's hub weights sit in the local Hugging Face cache (no network is touched)."""
    if entry.hf_hub_id is None:
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return False
    repo = entry.hf_hub_id.split("/", 1)[1] if entry.hf_hub_id.startswith("hf-hub:") else entry.hf_hub_id
    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in HUB_FILES)


def validate_spec(spec: str) -> str:
    if spec in (PRETRAINED, RANDOM) or spec.startswith(BASE_MODEL_PREFIX):
        return spec
    raise Invalid(
        f"weights must be 'pretrained', 'random' or a registered base model id (bm_...), got '{spec}'",
        param="weights",
    )


@dataclass(frozen=True)
class ResolvedWeights:
    kind: str  # pretrained | registered | random
    source: str  # the hub id, the base model id, or "random"
    sha256: str | None
    state_dict: dict[str, torch.Tensor] | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_registered(store: ObjectStore, key: str, sha256: str, fmt: str) -> dict[str, torch.Tensor]:
    """Read a registered checkpoint and refuse it when its bytes no longer match the recorded hash."""
    try:
        data = store.get_bytes(key)
    except KeyError:
        raise WeightsUnavailable(
            f"the registered weights object '{key}' is missing from the object store"
        ) from None
    actual = sha256_bytes(data)
    if actual != sha256:
        raise WeightsUnavailable(
            f"the registered weights changed since registration (sha256 {actual} != {sha256})"
        )
    return parse_checkpoint(data, fmt)


def parse_checkpoint(data: bytes, fmt: str) -> dict[str, torch.Tensor]:
    import torch

    if fmt == "safetensors":
        from safetensors.torch import load

        return load(data)
    # weights_only: a .pth is data, never code to run.
    obj: Any = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Invalid("the checkpoint holds no state dict of tensors", param="file")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_format(filename: str, data: bytes) -> str:
    if filename.endswith(".safetensors"):
        return "safetensors"
    if filename.endswith((".pth", ".pt", ".bin", ".ckpt")):
        return "pth"
    raise Invalid("weights files must be .safetensors, .pth, .pt or .bin", param="file")

"""Per-epoch checkpoints in the object store: trainable weights as safetensors, the rest as torch state.

`adapter.safetensors` holds the LoRA matrices + classifier (or every weight for full training) and
buffers; `state.pt` holds optimizer, scheduler, grad-scaler and RNG state and the loop's bookkeeping.
"""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from platform_core.artifacts import CHECKPOINT_FILE

if TYPE_CHECKING:
    from platform_core.storage import ObjectStore

WEIGHTS = CHECKPOINT_FILE
STATE = "state.pt"


@dataclass
class Checkpoint:
    epoch: int
    weights: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredCheckpoint:
    prefix: str
    sha256: str  # of the weights file
    size_bytes: int


def prefix_for(job_id: str, epoch: int) -> str:
    return f"jobs/{job_id}/checkpoints/epoch-{epoch:03d}"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_bytes(weights: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return save_safetensors({k: v.contiguous() for k, v in weights.items()}, metadata=metadata)


def save(store: ObjectStore, prefix: str, ckpt: Checkpoint) -> StoredCheckpoint:
    data = weights_bytes(ckpt.weights, {"epoch": str(ckpt.epoch)})
    buf = io.BytesIO()
    torch.save({"epoch": ckpt.epoch, **ckpt.state}, buf)
    # The state first: a checkpoint is complete once its weights exist.
    store.put_bytes(f"{prefix}/{STATE}", buf.getvalue())
    store.put_bytes(f"{prefix}/{WEIGHTS}", data)
    return StoredCheckpoint(prefix, hashlib.sha256(data).hexdigest(), len(data))


def load(store: ObjectStore, prefix: str, sha256: str | None = None) -> Checkpoint:
    data = store.get_bytes(f"{prefix}/{WEIGHTS}")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"checkpoint {prefix} does not match its recorded sha256")
    state = torch.load(
        io.BytesIO(store.get_bytes(f"{prefix}/{STATE}")), map_location="cpu", weights_only=True
    )
    return Checkpoint(epoch=int(state.pop("epoch")), weights=load_safetensors(data), state=state)

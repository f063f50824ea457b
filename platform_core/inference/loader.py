"""Serving models: each base (architecture + weights) loaded once per process, adapters in an LRU cache.

The engine keeps one SharedBase per base key (platform_core.inference.shared_base: the backbone and
the adapters added to it, served in one forward), brings adapters in from an AdapterSource the
registry builds from a manifest, evicts the least recently used ones that no request holds, and
micro-batches the callers of one base together.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from platform_core.inference.batcher import MicroBatcher
from platform_core.inference.shared_base import PEFT_PREFIX, BaseKey, LoraSpec, SharedBase, split_state
from platform_core.training import catalog
from platform_core.training.catalog import BackboneEntry

# Re-exported: the serving side and the benches name them from here.
__all__ = [
    "PEFT_PREFIX",
    "AdapterSource",
    "BaseKey",
    "Engine",
    "EngineStats",
    "LoraSpec",
    "SharedBase",
    "bf16_supported",
    "build_backbone",
    "get_engine",
    "split_state",
    "state_sha256",
]


@dataclass
class AdapterSource:
    """What it takes to bring one model version into memory; the registry builds it from a manifest."""

    name: str  # unique per model version
    base: BaseKey
    labels: tuple[str, ...]
    lora: LoraSpec | None  # None: a linear probe (classifier and buffers only)
    load_state: Callable[[], dict[str, torch.Tensor]]
    # The backbone weights; None means timm's pretrained weights for the catalog entry.
    load_base: Callable[[], dict[str, torch.Tensor] | None]
    # Temperature scaling: one T per label; the logits are divided by it before the sigmoid.
    temperatures: tuple[float, ...] | None = None


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict that does not depend on how it was serialised."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def build_backbone(entry: BackboneEntry, image_size: int, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """The classifier-less backbone, loaded by the training code itself (same checks, same filters)."""
    from platform_core.training.network import create_backbone
    from platform_core.training.weights import PRETRAINED, ResolvedWeights

    if state is None:
        weights = ResolvedWeights(kind=PRETRAINED, source=entry.hf_hub_id or entry.name, sha256=None)
    else:
        weights = ResolvedWeights(kind="registered", source="registry", sha256=None, state_dict=state)
    model = create_backbone(entry, 0, image_size, weights)
    return model


# --- the process-wide cache ---------------------------------------------------------------------


Item = tuple[str, torch.Tensor]


@dataclass
class EngineStats:
    base_loads: int = 0
    adapter_loads: int = 0
    evictions: int = 0
    last_adapter_load_s: float = 0.0


class Engine:
    """Bases shared by key, adapters in an LRU of `cache_size` (adapters in use are never evicted)."""

    def __init__(
        self,
        cache_size: int,
        window_ms: float,
        max_batch: int,
        device: str | None = None,
        bf16: bool = False,
    ) -> None:
        self.cache_size = max(1, cache_size)
        self.window_ms = window_ms
        self.max_batch = max_batch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # bfloat16 autocast for the forward, only where the hardware computes in it natively.
        self.autocast_dtype = torch.bfloat16 if bf16 and bf16_supported(self.device) else None
        self.stats = EngineStats()
        self._bases: dict[BaseKey, SharedBase] = {}
        self._batchers: dict[BaseKey, MicroBatcher[Item, np.ndarray]] = {}
        self._lru: OrderedDict[str, BaseKey] = OrderedDict()
        self._pins: dict[str, int] = {}
        self._lock = threading.RLock()

    def loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._lru

    def base_count(self) -> int:
        return len(self._bases)

    def base(self, key: BaseKey) -> SharedBase | None:
        return self._bases.get(key)

    def load(self, source: AdapterSource) -> SharedBase:
        """Bring the source's base and adapter into memory if they are not; mark it most recently used."""
        with self._lock:
            if source.name in self._lru:
                self._lru.move_to_end(source.name)
                return self._bases[source.base]
            base = self._bases.get(source.base)
            if base is None:
                base = self._load_base(source)
            start = time.perf_counter()
            base.add(source.name, source.labels, source.lora, source.load_state(), source.temperatures)
            self.stats.last_adapter_load_s = time.perf_counter() - start
            self.stats.adapter_loads += 1
            self._lru[source.name] = source.base
            self._evict()
            return base

    def _load_base(self, source: AdapterSource) -> SharedBase:
        entry = catalog.get(source.base.backbone)
        backbone = build_backbone(entry, source.base.image_size, source.load_base())
        base = SharedBase(source.base, entry, backbone, self.device)
        base.autocast_dtype = self.autocast_dtype
        self._bases[source.base] = base
        self._batchers[source.base] = MicroBatcher(
            lambda items: _run_batch(base, items),
            self.window_ms,
            self.max_batch,
            name=f"batcher-{entry.name}",
        )
        self.stats.base_loads += 1
        return base

    def _evict(self) -> None:
        for name in list(self._lru):
            if len(self._lru) <= self.cache_size:
                return
            if self._pins.get(name, 0) > 0:
                continue
            key = self._lru.pop(name)
            self._bases[key].remove(name)
            self.stats.evictions += 1

    def evict(self, name: str) -> None:
        """Drop one adapter now (an archived version), unless requests are using it."""
        with self._lock:
            if name in self._lru and self._pins.get(name, 0) == 0:
                self._bases[self._lru.pop(name)].remove(name)

    def predict(self, source: AdapterSource, images: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Probabilities per image, micro-batched with every other caller of the same base."""
        with self._lock:
            base = self.load(source)
            self._pins[source.name] = self._pins.get(source.name, 0) + 1
            batcher = self._batchers[base.key]
        try:
            futures = batcher.submit_many([(source.name, t) for t in images])
            return [f.result() for f in futures]
        finally:
            with self._lock:
                self._pins[source.name] -= 1
                if self._pins[source.name] == 0:
                    del self._pins[source.name]
                self._evict()

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()


def bf16_supported(device: torch.device) -> bool:
    """bfloat16 matmuls in hardware: a CUDA GPU that has them, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16"))


def _run_batch(base: SharedBase, items: list[Item]) -> list[np.ndarray]:
    x = torch.stack([t for _, t in items])
    return base.probabilities(x, [name for name, _ in items])


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine(cache_size: int, window_ms: float, max_batch: int, bf16: bool = False) -> Engine:
    """The one engine of this process (API server or worker)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Engine(cache_size, window_ms, max_batch, bf16=bf16)
        return _ENGINE

"""Serving models: each base (architecture + weights) loaded once per process, adapters in an LRU cache.

A base is a timm backbone without its classifier (num_classes=0), frozen, in eval mode. Model
versions trained on it are peft LoRA adapters added to it by name, each with its own classifier head
(kept beside the backbone, so versions with different label sets share one base) and, for CNNs, its
own BatchNorm running statistics (training moves them even when the weights are frozen). One forward
serves rows of different adapters: peft's `adapter_names` routes each row through its adapter's LoRA
matrices (Linear and Conv layers), a pre-hook gives each row its adapter's BatchNorm statistics, and
the heads run per adapter on the pooled features. Layers peft cannot mix fall back to one forward per
adapter within the batch.

The checkpoint an adapter is loaded from is the trainable state training saved (peft's key layout:
`base_model.model.<module>.lora_A.<name>.weight`, `<classifier>.modules_to_save.<name>.*`, buffers);
tensors the adapter needs but lacks are an error, tensors nobody knows are a warning.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from platform_core.errors import Invalid
from platform_core.inference.batcher import MicroBatcher
from platform_core.training import catalog
from platform_core.training.catalog import BackboneEntry

log = logging.getLogger("medtune.inference")

BASE_ROW = "__base__"  # peft's name for "no adapter" in a mixed batch
PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_[AB])\.(?P<adapter>[^.]+)\.(?P<param>weight|bias)$")
_SAVED_KEY = re.compile(r"^(?P<module>.+)\.modules_to_save\.(?P<adapter>[^.]+)\.(?P<param>.+)$")
_BN_STATS = ("running_mean", "running_var")

# The adapter of each row of the forward running on this thread, for the BatchNorm pre-hooks.
_ROWS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("medtune_rows", default=None)


@dataclass(frozen=True)
class BaseKey:
    backbone: str  # the catalog name
    weights_sha256: str
    image_size: int  # ViT position embeddings depend on it


@dataclass(frozen=True)
class LoraSpec:
    r: int
    alpha: int
    targets: tuple[str, ...] | str


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
    from platform_core.training.models import create_backbone
    from platform_core.training.weights import PRETRAINED, ResolvedWeights

    if state is None:
        weights = ResolvedWeights(kind=PRETRAINED, source=entry.hf_hub_id or entry.name, sha256=None)
    else:
        weights = ResolvedWeights(kind="registered", source="registry", sha256=None, state_dict=state)
    model = create_backbone(entry, 0, image_size, weights)
    return model


def split_state(state: dict[str, torch.Tensor], classifier: str) -> tuple[
    dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]
]:  # fmt: skip
    """Training's trainable state -> (LoRA keyed `<module>.<lora_A|lora_B>.<param>`, head, buffers)."""
    lora: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    for raw, tensor in state.items():
        key = raw.removeprefix(PEFT_PREFIX)
        if m := _LORA_KEY.match(key):
            lora[f"{m['module']}.{m['kind']}.{m['param']}"] = tensor
        elif (m := _SAVED_KEY.match(key)) and m["module"] == classifier:
            head[m["param"]] = tensor
        elif key.startswith(classifier + ".") and ".original_module." not in key:
            head[key.removeprefix(classifier + ".")] = tensor  # a linear probe has no peft wrapper
        elif ".original_module." in key or ".base_layer." in key:
            continue  # frozen copies of base weights
        else:
            buffers[key] = tensor
    return lora, head, buffers


@dataclass
class _NormStats:
    module: nn.modules.batchnorm._BatchNorm
    per_adapter: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    hook: Any = None


class SharedBase:
    """One backbone in memory and the adapters added to it; forward and changes are serialised by `lock`."""

    def __init__(self, key: BaseKey, entry: BackboneEntry, backbone: nn.Module, device: torch.device) -> None:
        self.key = key
        self.entry = entry
        self.device = device
        self.backbone = backbone.to(device).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.peft: Any = None  # peft.PeftModel once the first LoRA adapter arrives
        self.lora_adapters: set[str] = set()
        self.heads: dict[str, nn.Linear] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        self.norms: dict[str, _NormStats] = {}
        self.mixed = True  # False once an adapter touches a layer peft cannot mix in one batch
        self.lock = threading.RLock()
        self._modules = dict(self.backbone.named_modules())
        self._buffers = dict(self.backbone.named_buffers())

    # --- adapters -----------------------------------------------------------------------------

    def add(
        self, name: str, labels: Sequence[str], lora: LoraSpec | None, state: dict[str, torch.Tensor]
    ) -> None:
        if "lora_" in name or "." in name or name == BASE_ROW:
            raise ValueError(f"'{name}' cannot name an adapter")
        lora_state, head_state, buffers = split_state(state, self.entry.classifier)
        head = self._head(name, labels, head_state)
        stats = self._norm_stats(name, buffers)
        with self.lock:
            if name in self.heads:
                return
            if lora is not None:
                if not lora_state:
                    raise Invalid(f"the adapter of '{name}' holds no LoRA tensors")
                self._add_lora(name, lora, lora_state)
            elif lora_state:
                raise Invalid(f"the adapter of '{name}' holds LoRA tensors but its manifest names no LoRA")
            for path, (mean, var) in stats.items():
                norm = self.norms.setdefault(path, _NormStats(self._bn(path)))
                norm.per_adapter[name] = (mean, var)
                if norm.hook is None:
                    norm.hook = norm.module.register_forward_pre_hook(_norm_hook(norm))
            self.heads[name] = head
            self.labels[name] = tuple(labels)

    def remove(self, name: str) -> None:
        with self.lock:
            self.heads.pop(name, None)
            self.labels.pop(name, None)
            for path in list(self.norms):
                norm = self.norms[path]
                norm.per_adapter.pop(name, None)
                if not norm.per_adapter:
                    norm.hook.remove()
                    del self.norms[path]
            if name in self.lora_adapters:
                self._drop_lora(name)

    def _drop_lora(self, name: str) -> None:
        self.lora_adapters.discard(name)
        if not self.lora_adapters:
            # peft keeps no sane state without adapters: take the LoRA layers out, keep the backbone.
            self.backbone = self.peft.unload()
            self.peft = None
            self.mixed = True
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active which is now deleted"
            self.peft.delete_adapter(name)
        self.peft.set_adapter(next(iter(self.lora_adapters)))
        self.peft.requires_grad_(False)

    def _head(self, name: str, labels: Sequence[str], state: dict[str, torch.Tensor]) -> nn.Linear:
        weight, bias = state.get("weight"), state.get("bias")
        if weight is None or weight.ndim != 2:
            raise Invalid(f"the adapter of '{name}' lacks its classifier weights ('{self.entry.classifier}')")
        if weight.shape[0] != len(labels):
            raise Invalid(
                f"the classifier of '{name}' has {weight.shape[0]} outputs for {len(labels)} labels"
            )
        unknown = set(state) - {"weight", "bias"}
        if unknown:
            log.warning("ignoring %d unknown classifier tensors of %s", len(unknown), name)
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            head.weight.copy_(weight)
            if bias is not None:
                head.bias.copy_(bias)
        head.requires_grad_(False)
        return head.to(self.device).eval()

    def _bn(self, path: str) -> nn.modules.batchnorm._BatchNorm:
        module = self._modules.get(path)
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise Invalid(f"the adapter holds statistics for '{path}', which is no BatchNorm of the base")
        return module

    def _norm_stats(
        self, name: str, buffers: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        stats: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in buffers.items():
            path, _, leaf = key.rpartition(".")
            if leaf == "num_batches_tracked":
                continue
            if leaf in _BN_STATS and isinstance(self._modules.get(path), nn.modules.batchnorm._BatchNorm):
                stats.setdefault(path, {})[leaf] = tensor.to(self.device, torch.float32)
                continue
            own = self._buffers.get(key)
            if own is None:
                log.warning("ignoring unknown tensor '%s' in the adapter of %s", key, name)
            elif not torch.equal(own.cpu(), tensor.cpu()):
                raise Invalid(f"the adapter of '{name}' changes '{key}', which a shared base cannot vary")
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for path, pair in stats.items():
            if set(pair) != set(_BN_STATS):
                raise Invalid(f"the adapter of '{name}' holds only part of the statistics of '{path}'")
            out[path] = (pair["running_mean"], pair["running_var"])
        return out

    def _add_lora(self, name: str, spec: LoraSpec, state: dict[str, torch.Tensor]) -> None:
        from peft import LoraConfig, get_peft_model

        targets: list[str] | str = spec.targets if isinstance(spec.targets, str) else list(spec.targets)
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=targets)
        if self.peft is None:
            self.peft = get_peft_model(self.backbone, config, adapter_name=name)
        else:
            self.peft.add_adapter(name, config)
        try:
            own = {k: v for k, v in self.peft.state_dict().items() if f".{name}." in k and ".lora_" in k}
            wanted = {
                k: (
                    PEFT_PREFIX
                    + k.replace(".lora_A.", f".lora_A.{name}.").replace(".lora_B.", f".lora_B.{name}.")
                )
                for k in state
            }
            missing = set(own) - set(wanted.values())
            if missing:
                raise Invalid(
                    f"the adapter of '{name}' lacks {len(missing)} LoRA tensors (first: {min(missing)})"
                )
            unknown = [k for k, full in wanted.items() if full not in own]
            if unknown:
                log.warning(
                    "ignoring %d unknown LoRA tensors of %s (first: %s)", len(unknown), name, unknown[0]
                )
            self.peft.load_state_dict(
                {wanted[k]: v for k, v in state.items() if wanted[k] in own}, strict=False
            )
        except BaseException:
            self.lora_adapters.add(name)
            self._drop_lora(name)
            raise
        self.lora_adapters.add(name)
        self.peft.requires_grad_(False)
        self.peft.eval()
        self.mixed = self.mixed and _mixable(self.peft, name)

    # --- forward ------------------------------------------------------------------------------

    def features(self, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """Pooled features, each row through its own adapter (call under `lock`)."""
        rows = [n if n in self.lora_adapters else BASE_ROW for n in names]
        token = _ROWS.set(tuple(names))
        try:
            if self.peft is None or all(r == BASE_ROW for r in rows):
                if self.peft is None:
                    return self.backbone(x)
                with self.peft.disable_adapter():
                    return self.peft(x)
            if self.mixed:
                return self.peft(x, adapter_names=rows)
            return self._grouped(x, rows)
        finally:
            _ROWS.reset(token)

    def _grouped(self, x: torch.Tensor, rows: list[str]) -> torch.Tensor:
        out: torch.Tensor | None = None
        for adapter in dict.fromkeys(rows):
            idx = [i for i, r in enumerate(rows) if r == adapter]
            names = _ROWS.get() or ()
            token = _ROWS.set(tuple(names[i] for i in idx))
            try:
                if adapter == BASE_ROW:
                    with self.peft.disable_adapter():
                        part = self.peft(x[idx])
                else:
                    self.peft.set_adapter(adapter)
                    part = self.peft(x[idx])
            finally:
                _ROWS.reset(token)
            if out is None:
                out = part.new_empty((len(rows), *part.shape[1:]))
            out[idx] = part
        assert out is not None
        return out

    def logits(self, x: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        """One 1-D tensor of logits per row (adapters may have different label counts)."""
        unknown = set(names) - set(self.heads)
        if unknown:
            raise KeyError(f"adapters not loaded: {sorted(unknown)}")
        feats = self.features(x.to(self.device), names)
        out: list[torch.Tensor | None] = [None] * len(names)
        for adapter in dict.fromkeys(names):
            idx = [i for i, n in enumerate(names) if n == adapter]
            part = self.heads[adapter](feats[idx])
            for j, i in enumerate(idx):
                out[i] = part[j]
        return [t for t in out if t is not None]

    def probabilities(self, x: torch.Tensor, names: Sequence[str]) -> list[np.ndarray]:
        with self.lock, torch.inference_mode():
            return [torch.sigmoid(t).float().cpu().numpy() for t in self.logits(x, names)]


def _mixable(peft_model: Any, name: str) -> bool:
    from peft.tuners.lora import layer as lora_layers

    mixable = (
        lora_layers.Linear,
        lora_layers.Conv2d,
        lora_layers.Conv1d,
        lora_layers.Conv3d,
        lora_layers.Embedding,
    )
    for module in peft_model.modules():
        if isinstance(module, lora_layers.LoraLayer) and name in getattr(module, "lora_A", {}):
            if not isinstance(module, mixable) or module.use_dora.get(name, False):
                return False
    return True


def _norm_hook(norm: _NormStats) -> Callable[[nn.Module, tuple[Any, ...]], tuple[torch.Tensor] | None]:
    """Shift each row so the base's eval BatchNorm yields what the row's adapter statistics would.

    Eval BatchNorm is (x - m) / sqrt(v + eps) * w + b; feeding x' = (x - m_a) * sqrt((v0 + eps) / (v_a + eps))
    + m0 gives the adapter's (m_a, v_a) result for any w, b, and keeps any fused activation after it.
    """

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[torch.Tensor] | None:
        names = _ROWS.get()
        if not names or not any(n in norm.per_adapter for n in names):
            return None
        bn = norm.module
        assert bn.running_mean is not None and bn.running_var is not None
        m0, v0 = bn.running_mean.float(), bn.running_var.float()
        pairs = [norm.per_adapter.get(n, (m0, v0)) for n in names]
        mean = torch.stack([p[0] for p in pairs])
        var = torch.stack([p[1] for p in pairs])
        scale = torch.sqrt((v0 + bn.eps) / (var + bn.eps))
        x = args[0]
        shape = (len(names), -1) + (1,) * (x.ndim - 2)
        shifted = (x - mean.view(shape).to(x.dtype)) * scale.view(shape).to(x.dtype) + m0.view(
            1, *shape[1:]
        ).to(x.dtype)
        return (shifted,)

    return hook


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

    def __init__(self, cache_size: int, window_ms: float, max_batch: int, device: str | None = None) -> None:
        self.cache_size = max(1, cache_size)
        self.window_ms = window_ms
        self.max_batch = max_batch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
            base.add(source.name, source.labels, source.lora, source.load_state())
            self.stats.last_adapter_load_s = time.perf_counter() - start
            self.stats.adapter_loads += 1
            self._lru[source.name] = source.base
            self._evict()
            return base

    def _load_base(self, source: AdapterSource) -> SharedBase:
        entry = catalog.get(source.base.backbone)
        backbone = build_backbone(entry, source.base.image_size, source.load_base())
        base = SharedBase(source.base, entry, backbone, self.device)
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


def _run_batch(base: SharedBase, items: list[Item]) -> list[np.ndarray]:
    x = torch.stack([t for _, t in items])
    return base.probabilities(x, [name for name, _ in items])


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine(cache_size: int, window_ms: float, max_batch: int) -> Engine:
    """The one engine of this process (API server or worker)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Engine(cache_size, window_ms, max_batch)
        return _ENGINE

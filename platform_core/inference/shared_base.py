"""One base backbone in memory and the adapters added to it, served in one forward.

A base is a timm backbone without its classifier (num_classes=0), frozen, in eval mode. Model
versions trained on it are LoRA adapters (trained with peft) added to it by name, each with its own
classifier head (kept beside the backbone, so versions with different label sets share one base) and,
for CNNs, its own BatchNorm running statistics (training moves them even when the weights are frozen).
One forward serves rows of different adapters: hooks on the base's layers add each row's LoRA delta
and shift each row to its adapter's BatchNorm statistics, all rows at once (platform_core.inference.lora:
a gather and batched matmuls, so the cost does not grow with the adapters a batch mixes); the heads
run per adapter on the pooled features. A model that folds its rows inside a LoRA layer falls back to
one forward per adapter within the batch.

The checkpoint an adapter is loaded from is the trainable state training saved (peft's key layout:
`base_model.model.<module>.lora_A.<name>.weight`, `<classifier>.modules_to_save.<name>.*`, buffers);
tensors the adapter needs but lacks are an error, tensors nobody knows are a warning.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from platform_core.errors import Invalid
from platform_core.inference.lora import BatchedLora, NormShift, Unbatchable, lora_shapes, route
from platform_core.training.catalog import BackboneEntry

log = logging.getLogger("medtune.inference")

PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_[AB])\.(?P<adapter>[^.]+)\.(?P<param>weight|bias)$")
_SAVED_KEY = re.compile(r"^(?P<module>.+)\.modules_to_save\.(?P<adapter>[^.]+)\.(?P<param>.+)$")
_BN_STATS = ("running_mean", "running_var")


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


def split_state(
    state: dict[str, torch.Tensor], classifier: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
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


class SharedBase:
    """One backbone in memory and the adapters added to it; forward and changes are serialised by `lock`.

    Every adapter owns a slot; its LoRA matrices and BatchNorm statistics sit at that slot in hooks on
    the backbone's layers (platform_core.inference.lora), and its classifier head beside the backbone.
    """

    def __init__(self, key: BaseKey, entry: BackboneEntry, backbone: nn.Module, device: torch.device) -> None:
        self.key = key
        self.entry = entry
        self.device = device
        self.backbone = backbone.to(device).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.lora_adapters: set[str] = set()
        self.heads: dict[str, nn.Linear] = {}
        self.labels: dict[str, tuple[str, ...]] = {}
        self.temperatures: dict[str, torch.Tensor] = {}
        self.slots: dict[str, int] = {}
        self.layers: dict[str, BatchedLora] = {}
        self.norms: dict[str, NormShift] = {}
        self.capacity = 8
        self.autocast_dtype: torch.dtype | None = None  # e.g. bfloat16 serving (the engine decides)
        # False once a LoRA layer met a batch it cannot split by rows: one forward per adapter then.
        self.mixed = True
        self.lock = threading.RLock()
        self._modules = dict(self.backbone.named_modules())
        self._buffers = dict(self.backbone.named_buffers())

    # --- adapters -----------------------------------------------------------------------------

    def add(
        self,
        name: str,
        labels: Sequence[str],
        lora: LoraSpec | None,
        state: dict[str, torch.Tensor],
        temperatures: Sequence[float] | None = None,
    ) -> None:
        lora_state, head_state, buffers = split_state(state, self.entry.classifier)
        head = self._head(name, labels, head_state)
        stats = self._norm_stats(name, buffers)
        with self.lock, torch.inference_mode(False), torch.no_grad():
            if name in self.heads:
                return
            if lora is not None:
                if not lora_state:
                    raise Invalid(f"the adapter of '{name}' holds no LoRA tensors")
                plan = self._lora_plan(name, lora, lora_state)
            elif lora_state:
                raise Invalid(f"the adapter of '{name}' holds LoRA tensors but its manifest names no LoRA")
            else:
                plan = {}
            slot = self._claim_slot()
            for path, (a, b, scaling) in plan.items():
                layer = self.layers.get(path)
                if layer is None:
                    layer = self.layers[path] = BatchedLora(self._modules[path], self.capacity)
                layer.set(slot, a, b, scaling)
            for path, (mean, var) in stats.items():
                norm = self.norms.get(path)
                if norm is None:
                    norm = self.norms[path] = NormShift(self._bn(path), self.capacity)
                norm.set(slot, mean, var)
            if plan:
                self.lora_adapters.add(name)
            self.slots[name] = slot
            self.heads[name] = head
            self.labels[name] = tuple(labels)
            if temperatures is not None:
                self.temperatures[name] = torch.tensor(temperatures, dtype=torch.float32, device=self.device)

    def remove(self, name: str) -> None:
        with self.lock, torch.inference_mode(False), torch.no_grad():
            self.heads.pop(name, None)
            self.labels.pop(name, None)
            self.temperatures.pop(name, None)
            self.lora_adapters.discard(name)
            slot = self.slots.pop(name, None)
            if slot is None:
                return
            for layer in self.layers.values():
                layer.clear(slot)
            for norm in self.norms.values():
                norm.clear(slot)

    def _claim_slot(self) -> int:
        used = set(self.slots.values())
        slot = next(s for s in range(1, len(used) + 2) if s not in used)  # slot 0: no adapter
        if slot >= self.capacity:
            self.capacity *= 2
            for layer in self.layers.values():
                layer.grow(self.capacity)
            for norm in self.norms.values():
                norm.grow(self.capacity)
        return slot

    def _lora_plan(
        self, name: str, spec: LoraSpec, state: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """The layers peft would have adapted for this spec, each with its checked (A, B, scaling)."""
        from peft import LoraConfig
        from peft.tuners.tuners_utils import check_target_module_exists

        targets: list[str] | str = spec.targets if isinstance(spec.targets, str) else list(spec.targets)
        config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=targets)
        paths = [p for p in self._modules if p and check_target_module_exists(config, p)]
        if not paths:
            raise Invalid(f"the LoRA targets of '{name}' match no layer of {self.entry.name}")
        wanted = {f"{p}.{kind}.weight" for p in paths for kind in ("lora_A", "lora_B")}
        missing = sorted(wanted - set(state))
        if missing:
            raise Invalid(f"the adapter of '{name}' lacks {len(missing)} LoRA tensors (first: {missing[0]})")
        unknown = sorted(set(state) - wanted)
        if unknown:
            log.warning("ignoring %d unknown LoRA tensors of %s (first: %s)", len(unknown), name, unknown[0])
        plan: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        for path in paths:
            module = self._modules[path]
            if not isinstance(module, nn.Linear | nn.Conv2d):
                raise Invalid(f"LoRA on {type(module).__name__} layers ('{path}') cannot be served")
            a, b = state[f"{path}.lora_A.weight"], state[f"{path}.lora_B.weight"]
            shapes = lora_shapes(module, spec.r)
            if (tuple(a.shape), tuple(b.shape)) != shapes:
                raise Invalid(
                    f"the LoRA tensors of '{name}' at '{path}' have shapes {tuple(a.shape)}, "
                    f"{tuple(b.shape)}; rank {spec.r} needs {shapes[0]}, {shapes[1]}"
                )
            plan[path] = (a, b, spec.alpha / spec.r)
        return plan

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
        with torch.inference_mode(False):
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

    # --- forward ------------------------------------------------------------------------------

    def features(self, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """Pooled features, each row through its own adapter (call under `lock`)."""
        slots = [self.slots.get(n, 0) for n in names]
        if not self.mixed and len(set(slots)) > 1:
            return self._grouped(x, slots)
        with route(slots, self.device):
            try:
                out: torch.Tensor = self.backbone(x)
                return out
            except Unbatchable:
                log.warning("%s folds its rows inside a LoRA layer: one forward per adapter", self.entry.name)
                self.mixed = False
            finally:
                for norm in self.norms.values():
                    norm.restore()
        return self._grouped(x, slots)

    def _grouped(self, x: torch.Tensor, slots: list[int]) -> torch.Tensor:
        out: torch.Tensor | None = None
        for slot in dict.fromkeys(slots):
            idx = [i for i, s in enumerate(slots) if s == slot]
            with route([slot] * len(idx), self.device):
                part: torch.Tensor = self.backbone(x[idx])
            if out is None:
                out = part.new_empty((len(slots), *part.shape[1:]))
            out[idx] = part
        assert out is not None
        return out

    def logits(self, x: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        """One 1-D tensor of logits per row (adapters may have different label counts)."""
        unknown = set(names) - set(self.heads)
        if unknown:
            raise KeyError(f"adapters not loaded: {sorted(unknown)}")
        feats = self.features(x.to(self.device), names).float()
        if len(set(names)) == 1:
            return list(self.heads[names[0]](feats).unbind(0))
        out: list[torch.Tensor | None] = [None] * len(names)
        for adapter in dict.fromkeys(names):
            idx = [i for i, n in enumerate(names) if n == adapter]
            part = self.heads[adapter](feats[idx])
            for j, i in enumerate(idx):
                out[i] = part[j]
        return [t for t in out if t is not None]

    def probabilities(self, x: torch.Tensor, names: Sequence[str]) -> list[np.ndarray]:
        with self.lock, torch.inference_mode(), self._autocast():
            logits = self.logits(x, names)
        scaled = [
            t.float() / self.temperatures[n] if n in self.temperatures else t.float()
            for t, n in zip(logits, names, strict=True)
        ]
        return [torch.sigmoid(t).cpu().numpy() for t in scaled]

    def _autocast(self) -> Any:
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

"""Batched multi-adapter LoRA for serving: each layer's adapters stacked by slot, one gather per forward.

peft's mixed-batch forward loops in Python over the adapters present in a batch at every LoRA layer
(index, two small matmuls, scatter per adapter): with 20 adapters in a batch of 32 that loop, not the
base model, bounds the throughput. Here every adapter loaded on a base owns a slot (slot 0 is "no
adapter" and holds zeros); each target layer keeps its adapters' A and B matrices in tensors indexed
by slot, and a forward hook adds the LoRA delta of all rows at once: a gather of each row's matrices
and two batched matmuls for Linear layers, a grouped convolution and a batched matmul for Conv2d. The
cost of a batch does not depend on how many adapters it mixes. The scaling alpha/r multiplies the small
rank-r activations and the delta is added into the layer's output in place; ranks may differ between
adapters (padded with zeros, which add nothing).

BatchNorm statistics per adapter (CNNs) sit in stacks too: a batch mixing adapters runs each BatchNorm
once with its rows folded into the channels and each row's statistics; a batch on a single adapter runs
it with that adapter's statistics swapped in.

Measured on 2 CPU cores (bench/infer.py), a batch mixing 20 adapters costs what a batch on one does
(ViT-S/16 and ResNet-50 at 224 px), where peft's loop reached 0.33-0.48 of it on a tiny ViT.

The rows of the forward running on this thread are in a context variable (`route`); outside a route
the hooks do nothing and the backbone is the bare base.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Unbatchable(RuntimeError):
    """A LoRA layer saw a leading dimension that is not the rows of the batch (a model that folds them)."""


@dataclass(frozen=True)
class Route:
    slots: torch.Tensor  # (rows,) int64 on the model's device: each row's adapter slot
    single: int | None  # the slot every row shares, if they all share one

    @property
    def rows(self) -> int:
        return int(self.slots.shape[0])


_ROUTE: contextvars.ContextVar[Route | None] = contextvars.ContextVar("medtune_route", default=None)


@contextmanager
def route(slots: list[int], device: torch.device) -> Iterator[Route]:
    single = slots[0] if slots and all(s == slots[0] for s in slots) else None
    current = Route(torch.tensor(slots, dtype=torch.long, device=device), single)
    token = _ROUTE.set(current)
    try:
        yield current
    finally:
        _ROUTE.reset(token)


def lora_shapes(module: nn.Module, r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes peft gives lora_A.weight and lora_B.weight of a Linear or Conv2d layer for rank r."""
    if isinstance(module, nn.Linear):
        return (r, module.in_features), (module.out_features, r)
    if isinstance(module, nn.Conv2d):
        return (r, module.in_channels, *module.kernel_size), (module.out_channels, r // module.groups, 1, 1)
    raise TypeError(f"LoRA on {type(module).__name__} layers cannot be served")


def _grow(t: torch.Tensor, dim: int, size: int, fill: float = 0.0) -> torch.Tensor:
    if t.shape[dim] >= size:
        return t
    shape = list(t.shape)
    shape[dim] = size - t.shape[dim]
    return torch.cat([t, t.new_full(shape, fill)], dim=dim)


class BatchedLora:
    """The LoRA adapters of one Linear or Conv2d layer of a shared base, as a forward hook on it.

    Every batch, on one adapter or many, takes the same path (a gather of each row's matrices), so a
    row's answer does not depend on which adapters share its batch, beyond float rounding.
    """

    def __init__(self, module: nn.Module, capacity: int) -> None:
        if not isinstance(module, nn.Linear | nn.Conv2d):
            raise TypeError(f"LoRA on {type(module).__name__} layers cannot be served")
        self.module = module
        self.kind = "linear" if isinstance(module, nn.Linear) else "conv"
        dev, dt = module.weight.device, module.weight.dtype
        if isinstance(module, nn.Linear):
            # (slot, rank, in) and (slot, out, rank): peft's layouts, stacked.
            self.a = torch.zeros(capacity, 0, module.in_features, device=dev, dtype=dt)
            self.b = torch.zeros(capacity, module.out_features, 0, device=dev, dtype=dt)
        else:
            kh, kw = module.kernel_size
            self.a = torch.zeros(capacity, 0, module.in_channels, kh, kw, device=dev, dtype=dt)
            self.b = torch.zeros(capacity, module.out_channels, 0, device=dev, dtype=dt)  # dense over rank
        self.scale = torch.zeros(capacity, device=dev, dtype=dt)
        self.own: set[int] = set()  # the slots holding an adapter
        self.handle = module.register_forward_hook(self._hook)

    def grow(self, capacity: int) -> None:
        self.a = _grow(self.a, 0, capacity)
        self.b = _grow(self.b, 0, capacity)
        self.scale = _grow(self.scale, 0, capacity)

    def set(self, slot: int, a: torch.Tensor, b: torch.Tensor, scaling: float) -> None:
        """Put one adapter's lora_A / lora_B weights (peft's layouts) into `slot`."""
        r = int(a.shape[0])
        dev, dt = self.a.device, self.a.dtype
        a, b = a.to(dev, dt).contiguous(), b.to(dev, dt).contiguous()
        self.a = _grow(self.a, 1, r)
        self.b = _grow(self.b, 2, r)
        self.a[slot].zero_()
        self.b[slot].zero_()
        self.a[slot, :r] = a
        dense = b.reshape(b.shape[0], -1)
        groups = self.module.groups if isinstance(self.module, nn.Conv2d) else 1
        if groups > 1:  # a grouped 1x1 conv is a block-diagonal matrix over the rank channels
            per, step = r // groups, b.shape[0] // groups
            full = dense.new_zeros(b.shape[0], r)
            for g in range(groups):
                rows = slice(g * step, (g + 1) * step)
                full[rows, g * per : (g + 1) * per] = dense[rows]
            dense = full
        self.b[slot, :, :r] = dense
        self.scale[slot] = scaling
        self.own.add(slot)

    def clear(self, slot: int) -> None:
        if slot in self.own:
            self.own.discard(slot)
            self.a[slot].zero_()
            self.b[slot].zero_()
            self.scale[slot] = 0.0

    def remove(self) -> None:
        self.handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        current = _ROUTE.get()
        if current is None or not self.own:
            return None
        x = args[0]
        grad = torch.is_grad_enabled() and (output.requires_grad or x.requires_grad)
        slots = current.slots
        if current.single is not None:
            if current.single not in self.own:
                return None
            if x.shape[0] != current.rows:  # rows folded with tokens, all on the one adapter
                slots = slots.new_full((x.shape[0],), current.single)
        elif x.shape[0] != current.rows:
            raise Unbatchable(f"a LoRA layer saw {x.shape[0]} rows in a batch of {current.rows}")
        return self._mixed(x, slots, output, grad)

    def _mixed(self, x: torch.Tensor, slots: torch.Tensor, output: torch.Tensor, grad: bool) -> torch.Tensor:
        """output + each row's B @ (A @ x) * scaling; the scaling goes on the small rank-r activations
        and the sum into `output` in place (one batched matmul-add), unless autograd needs the graph."""
        n = x.shape[0]
        a = self.a.index_select(0, slots).to(x.dtype)
        b = self.b.index_select(0, slots).to(output.dtype)
        scale = self.scale.index_select(0, slots).to(x.dtype).view(n, 1, 1)
        if isinstance(self.module, nn.Linear):
            h = torch.bmm(x.reshape(n, -1, x.shape[-1]), a.transpose(1, 2)) * scale  # (n, tokens, r)
            left, right = h, b.transpose(1, 2)  # output (n, tokens, out) += h @ B^T
            flat = output.view(n, -1, output.shape[-1]) if output.is_contiguous() else None
        else:
            conv = self.module
            c, height, width = x.shape[1:]
            r = a.shape[1]
            # Each row convolved with its own A: one grouped convolution with the rows as groups.
            h = F.conv2d(
                x.reshape(1, n * c, height, width),
                a.reshape(n * r, *a.shape[2:]),
                None,
                conv.stride,
                conv.padding,
                1,
                n,
            )
            h = h.reshape(n, r, -1) * scale  # (n, r, pixels)
            left, right = b, h  # output (n, out, pixels) += B @ h
            flat = output.view(n, output.shape[1], -1) if output.is_contiguous() else None
        left, right = left.to(output.dtype), right.to(output.dtype)
        if flat is None or grad:
            return output + torch.bmm(left, right).reshape(output.shape)
        flat.baddbmm_(left, right)
        return output


class NormShift:
    """Per-adapter running statistics of one eval BatchNorm of a shared base, as forward hooks on it.

    A batch on one adapter runs the BatchNorm with that adapter's statistics swapped in (what the
    training model computes). A batch mixing adapters runs it once with the rows folded into the
    channels, (n, C, H, W) -> (1, n * C, H, W), and per-row statistics, weight and bias of n * C
    channels: eval BatchNorm is per channel, so that is each row's own BatchNorm in one pass, and any
    activation the module fuses after the norm still applies.
    """

    def __init__(self, module: nn.modules.batchnorm._BatchNorm, capacity: int) -> None:
        assert module.running_mean is not None and module.running_var is not None
        self.module = module
        self.base = (module.running_mean, module.running_var)
        self.params = {k: module._parameters.get(k) for k in ("weight", "bias")}
        # (slot, channels); a slot without statistics of its own holds the base's.
        self.mean = module.running_mean.detach().clone().repeat(capacity, 1)
        self.var = module.running_var.detach().clone().repeat(capacity, 1)
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.swapped = False
        self.folded: tuple[int, ...] | None = None
        self.handles = [
            module.register_forward_pre_hook(self._before),
            module.register_forward_hook(self._after),
        ]

    def grow(self, capacity: int) -> None:
        extra = capacity - self.mean.shape[0]
        if extra > 0:
            self.mean = torch.cat([self.mean, self.base[0].detach().repeat(extra, 1)])
            self.var = torch.cat([self.var, self.base[1].detach().repeat(extra, 1)])

    def set(self, slot: int, mean: torch.Tensor, var: torch.Tensor) -> None:
        m0, v0 = self.base
        mean, var = mean.to(m0.device, m0.dtype), var.to(v0.device, v0.dtype)
        self.mean[slot] = mean
        self.var[slot] = var
        self.stats[slot] = (mean, var)

    def clear(self, slot: int) -> None:
        if self.stats.pop(slot, None) is not None:
            self.mean[slot] = self.base[0]
            self.var[slot] = self.base[1]

    def remove(self) -> None:
        self.restore()
        for handle in self.handles:
            handle.remove()

    def restore(self) -> None:
        """Put the base's statistics and parameters back (also after a forward that failed half way)."""
        if self.swapped:
            self.module.running_mean, self.module.running_var = self.base
            for key, param in self.params.items():
                self.module._parameters[key] = param
            self.swapped = False
        self.folded = None

    def _before(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[torch.Tensor] | None:
        current = _ROUTE.get()
        if current is None or not self.stats:
            return None
        bn = self.module
        if current.single is not None:
            stats = self.stats.get(current.single)
            if stats is not None:
                bn.running_mean, bn.running_var = stats
                self.swapped = True
            return None
        x = args[0]
        n = x.shape[0]
        if n != current.rows:
            raise Unbatchable(f"a BatchNorm saw {n} rows in a batch of {current.rows}")
        self.swapped = True
        bn.running_mean = self.mean.index_select(0, current.slots).reshape(-1)
        bn.running_var = self.var.index_select(0, current.slots).reshape(-1)
        for key, param in self.params.items():
            if param is not None:
                # Not a Parameter: assigned straight into the module's table for this one forward.
                bn._parameters[key] = param.detach().repeat(n)  # type: ignore[assignment]
        self.folded = tuple(x.shape)
        return (x.reshape(1, n * x.shape[1], *x.shape[2:]),)

    def _after(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        folded = self.folded
        self.restore()
        if folded is None:
            return None
        return output.reshape(folded[0], -1, *output.shape[2:])

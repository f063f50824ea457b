"""Batched multi-adapter LoRA for serving: each layer's adapters stacked by slot, one gather per forward.

peft's mixed-batch forward loops in Python over the adapters present in a batch at every LoRA layer
(index, two small matmuls, scatter per adapter): with 20 adapters in a batch of 32 that loop, not the
base model, bounds the throughput. Here every adapter loaded on a base owns a slot (slot 0 is "no
adapter" and holds zeros); each target layer keeps its adapters' A and B matrices in tensors indexed
by slot, and a forward hook adds the LoRA delta of all rows at once: a gather of each row's matrices
and two batched matmuls for Linear layers, a grouped convolution and a batched matmul for Conv2d. The
cost of a batch does not depend on how many adapters it mixes. The scaling alpha/r is folded into B;
ranks may differ between adapters (padded with zeros, which add nothing).

BatchNorm statistics per adapter (CNNs) work the same way: a pre-hook maps each row to what the base's
eval BatchNorm would give with the row's adapter statistics, as one fused multiply-add.

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
    """The LoRA adapters of one Linear or Conv2d layer of a shared base, as a forward hook on it."""

    def __init__(self, module: nn.Module, capacity: int) -> None:
        if isinstance(module, nn.Linear):
            self.kind = "linear"
            fan_in, out = module.in_features, module.out_features
            # (slot, in, rank) and (slot, rank, out): x @ A then @ B, both as batched matmuls.
            self.a = torch.zeros(capacity, fan_in, 0)
            self.b = torch.zeros(capacity, 0, out)
        elif isinstance(module, nn.Conv2d):
            self.kind = "conv"
            kh, kw = module.kernel_size
            self.a = torch.zeros(capacity, 0, module.in_channels, kh, kw)
            self.b = torch.zeros(capacity, module.out_channels, 0)
        else:
            raise TypeError(f"LoRA on {type(module).__name__} layers cannot be served")
        self.module = module
        weight = module.weight
        self.a = self.a.to(weight.device, weight.dtype)
        self.b = self.b.to(weight.device, weight.dtype)
        self.ranks: dict[int, int] = {}
        self.handle = module.register_forward_hook(self._hook)

    @property
    def rank(self) -> int:
        return int(self.a.shape[2] if self.kind == "linear" else self.a.shape[1])

    def grow(self, capacity: int) -> None:
        self.a = _grow(self.a, 0, capacity)
        self.b = _grow(self.b, 0, capacity)

    def set(self, slot: int, a: torch.Tensor, b: torch.Tensor, scaling: float) -> None:
        """Put one adapter's lora_A / lora_B weights (peft's layouts) into `slot`."""
        r = int(a.shape[0])
        dev, dt = self.a.device, self.a.dtype
        a = a.to(dev, torch.float32)
        b = b.to(dev, torch.float32) * scaling
        if self.kind == "linear":
            self.a = _grow(self.a, 2, r)
            self.b = _grow(self.b, 1, r)
            self.a[slot].zero_()
            self.b[slot].zero_()
            self.a[slot, :, :r] = a.t().to(dt)
            self.b[slot, :r, :] = b.t().to(dt)
        else:
            conv = self.module
            assert isinstance(conv, nn.Conv2d)
            groups, out = conv.groups, conv.out_channels
            dense = b.reshape(out, -1)
            if groups > 1:  # a grouped 1x1 conv is a block-diagonal matrix over the rank channels
                per = r // groups
                full = dense.new_zeros(out, r)
                step = out // groups
                for g in range(groups):
                    rows = slice(g * step, (g + 1) * step)
                    full[rows, g * per : (g + 1) * per] = dense[rows]
                dense = full
            self.a = _grow(self.a, 1, r)
            self.b = _grow(self.b, 2, r)
            self.a[slot].zero_()
            self.b[slot].zero_()
            self.a[slot, :r] = a.to(dt)
            self.b[slot, :, :r] = dense.to(dt)
        self.ranks[slot] = r

    def clear(self, slot: int) -> None:
        if self.ranks.pop(slot, None) is not None:
            self.a[slot].zero_()
            self.b[slot].zero_()

    def remove(self) -> None:
        self.handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        current = _ROUTE.get()
        if current is None or not self.ranks:
            return None
        x = args[0]
        single = current.single
        if single is not None:
            r = self.ranks.get(single)
            if r is None:
                return None
            delta = self._one(x, single, r)
        else:
            if x.shape[0] != current.rows:
                raise Unbatchable(f"a LoRA layer saw {x.shape[0]} rows in a batch of {current.rows}")
            delta = self._mixed(x, current.slots)
        delta = delta.to(output.dtype)
        if torch.is_grad_enabled() and (output.requires_grad or delta.requires_grad):
            return output + delta
        return output.add_(delta)

    def _one(self, x: torch.Tensor, slot: int, r: int) -> torch.Tensor:
        if self.kind == "linear":
            return (x @ self.a[slot, :, :r].to(x.dtype)) @ self.b[slot, :r, :].to(x.dtype)
        conv = self.module
        assert isinstance(conv, nn.Conv2d)
        h = F.conv2d(x, self.a[slot, :r].to(x.dtype), None, conv.stride, conv.padding)
        return F.conv2d(h, self.b[slot, :, :r, None, None].to(x.dtype))

    def _mixed(self, x: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        a = self.a.index_select(0, slots).to(x.dtype)
        b = self.b.index_select(0, slots).to(x.dtype)
        if self.kind == "linear":
            rows = x.reshape(n, -1, x.shape[-1])
            return torch.bmm(torch.bmm(rows, a), b).reshape(*x.shape[:-1], b.shape[-1])
        conv = self.module
        assert isinstance(conv, nn.Conv2d)
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
        out_h, out_w = h.shape[-2:]
        return torch.bmm(b, h.reshape(n, r, -1)).reshape(n, b.shape[1], out_h, out_w)


class NormShift:
    """Per-adapter running statistics of one eval BatchNorm of a shared base, as a forward pre-hook.

    Eval BatchNorm is (x - m) / sqrt(v + eps) * w + b; feeding x' = x * c + d with
    c = sqrt((v0 + eps) / (va + eps)) and d = m0 - ma * c gives the adapter's (ma, va) result for any
    w, b, and keeps any activation fused after the norm.
    """

    def __init__(self, module: nn.modules.batchnorm._BatchNorm, capacity: int) -> None:
        assert module.running_mean is not None
        self.module = module
        channels = module.running_mean.shape[0]
        dev = module.running_mean.device
        self.scale = torch.ones(capacity, channels, device=dev)
        self.shift = torch.zeros(capacity, channels, device=dev)
        self.slots: set[int] = set()
        self.handle = module.register_forward_pre_hook(self._hook)

    def grow(self, capacity: int) -> None:
        self.scale = _grow(self.scale, 0, capacity, 1.0)
        self.shift = _grow(self.shift, 0, capacity, 0.0)

    def set(self, slot: int, mean: torch.Tensor, var: torch.Tensor) -> None:
        bn = self.module
        assert bn.running_mean is not None and bn.running_var is not None
        m0, v0 = bn.running_mean.float(), bn.running_var.float()
        mean, var = mean.to(m0.device, torch.float32), var.to(m0.device, torch.float32)
        scale = torch.sqrt((v0 + bn.eps) / (var + bn.eps))
        self.scale[slot] = scale
        self.shift[slot] = m0 - mean * scale
        self.slots.add(slot)

    def clear(self, slot: int) -> None:
        if slot in self.slots:
            self.slots.discard(slot)
            self.scale[slot] = 1.0
            self.shift[slot] = 0.0

    def remove(self) -> None:
        self.handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[torch.Tensor] | None:
        current = _ROUTE.get()
        if current is None or not self.slots:
            return None
        x = args[0]
        shape = (-1, x.shape[1]) + (1,) * (x.ndim - 2)
        if current.single is not None:
            if current.single not in self.slots:
                return None
            scale = self.scale[current.single].to(x.dtype).view(shape)
            shift = self.shift[current.single].to(x.dtype).view(shape)
        else:
            scale = self.scale.index_select(0, current.slots).to(x.dtype).view(shape)
            shift = self.shift.index_select(0, current.slots).to(x.dtype).view(shape)
        return (torch.addcmul(shift, x, scale),)

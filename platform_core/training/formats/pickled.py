"""Tensors out of a pickled nn.Module (how TorchXRayVision publishes its weights), without running it.

`torch.save(model)` pickles the module objects themselves; loading that normally imports and builds
the publisher's classes, which is running their code. Here every class the pickle names is replaced by
an inert stub that only keeps the state pickle hands it, and the tensors are collected from the stubs'
`_parameters` and `_buffers` along `_modules`. Only torch's tensor-rebuild functions are real.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from typing import Any

import torch

from platform_core.errors import Invalid

# The callables a module pickle needs that build tensors; nothing else from the pickle is called.
_REAL = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _Stub:
    """Stands in for any pickled class: accepts construction arguments and state, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REAL:
            return super().find_class(module, name)
        return type(name, (_Stub,), {"__module__": f"stub.{module}"})


class _PickleModule:
    """What torch.load's `pickle_module` needs: an Unpickler (and `load` for the legacy format)."""

    Unpickler = _Unpickler
    __name__ = "medtune_stub_pickle"

    @staticmethod
    def load(f: Any, **kwargs: Any) -> Any:
        return _Unpickler(f, **kwargs).load()


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for slot in ("_parameters", "_buffers"):
        for name, value in (getattr(obj, "__dict__", {}).get(slot) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value.detach()
    for name, child in (getattr(obj, "__dict__", {}).get("_modules") or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def module_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """The state dict of a `torch.save(model)` file, of a `torch.save(state_dict)` one, or of a training
    checkpoint that keeps it under `model` (or `state_dict`, ...) beside its arguments."""
    try:
        obj = torch.load(
            io.BytesIO(data), map_location="cpu", weights_only=False, pickle_module=_PickleModule
        )
    except Exception as exc:
        raise Invalid(f"the checkpoint cannot be read as a torch file: {exc}", param="file") from None
    for key in ("state_dict", "model", "module", "teacher"):  # a training checkpoint: its model part
        if isinstance(obj, dict) and isinstance(obj.get(key), dict | _Stub):
            obj = obj[key]
            break
    if isinstance(obj, dict | OrderedDict):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    out: dict[str, torch.Tensor] = {}
    _collect(obj, "", out)
    if not out:
        raise Invalid("the checkpoint holds neither a module nor a state dict of tensors", param="file")
    return out

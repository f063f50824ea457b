"""TorchXRayVision DenseNet releases -> timm `densenet121` state dicts.

A release is a `torch.save(model)` pickle (read inertly by `pickled`), or a state dict. The tensor names
are timm's already. TorchXRayVision takes one channel in [-1024, 1024]; the platform feeds three equal
grey channels normalised with mean 0.5 and std 1/2048 (the same numbers), so the first convolution's
weights are repeated over three channels and divided by three: the features are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from platform_core.training.formats.pickled import module_state_dict

State = dict[str, torch.Tensor]

# pixel/255 in [0, 1] -> (2 * x - 1) * 1024 is (x - MEAN) / STD (torchxrayvision.datasets.normalize).
MEAN = 0.5
STD = 1 / 2048
FIRST_CONV = "features.conv0.weight"


def single_to_three_channels(weight: torch.Tensor) -> torch.Tensor:
    return weight.repeat(1, 3, 1, 1) / 3 if weight.shape[1] == 1 else weight


def convert(state: Mapping[str, torch.Tensor]) -> State:
    out = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("op_threshs")}
    if FIRST_CONV in out:
        out[FIRST_CONV] = single_to_three_channels(out[FIRST_CONV])
    return out


def read(data: bytes) -> State:
    return convert(module_state_dict(data))

"""Grad-CAM heatmaps (the `grad-cam` package) for one adapter of a shared base: CNNs and ViTs.

CNNs use the last feature stage timm reports; ViTs the last block's first norm, with the patch
tokens (prefix tokens dropped) reshaped to a grid. The base's lock is held throughout: the hooks sit
on modules every adapter shares.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from torch import nn

from platform_core.inference.loader import SharedBase


class _OneAdapter(nn.Module):
    def __init__(self, base: SharedBase, name: str) -> None:
        super().__init__()
        self.base = base
        self.name = name
        self.anchor = nn.Parameter(
            torch.zeros(1, device=base.device), requires_grad=False
        )  # grad-cam reads .device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.base.logits(x, [self.name] * len(x)))


def _target_and_reshape(base: SharedBase) -> tuple[nn.Module, Any]:
    model = base.backbone
    if base.entry.family == "vit":
        blocks: Any = model.get_submodule("blocks")
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        patch_embed: Any = model.get_submodule("patch_embed")
        grid: tuple[int, ...] = tuple(patch_embed.grid_size)

        def reshape(tokens: torch.Tensor) -> torch.Tensor:
            patches = tokens[:, prefix:, :]
            out = patches.reshape(tokens.size(0), grid[0], grid[1], tokens.size(2))
            return out.permute(0, 3, 1, 2)

        return blocks[-1].norm1, reshape
    info = getattr(model, "feature_info", None)
    name = info[-1]["module"] if info else None
    if not name:
        raise ValueError(f"no Grad-CAM target layer known for '{base.entry.name}'")
    return model.get_submodule(name), None


def gradcam(base: SharedBase, name: str, x: torch.Tensor, label_index: int) -> np.ndarray:
    """An H x W map in [0, 1] for one normalised 3 x H x W input and one label of adapter `name`."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    target, reshape = _target_and_reshape(base)
    with base.lock, torch.enable_grad():
        wrapper = _OneAdapter(base, name)
        # The base is frozen: without a gradient on the input, the target layer's output would have none.
        inputs = x[None].to(base.device).clone().requires_grad_(True)
        with GradCAM(wrapper, [target], reshape_transform=reshape) as cam:
            maps = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(label_index)])
        base.backbone.eval()
    out: np.ndarray = np.nan_to_num(maps[0].astype(np.float32))
    return out


def overlay_png(grey: np.ndarray, heatmap: np.ndarray) -> bytes:
    """The heatmap over the grey image, as PNG bytes."""
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    if heatmap.shape != grey.shape:
        heatmap = np.asarray(
            Image.fromarray(heatmap.astype(np.float32), mode="F").resize(
                grey.shape[::-1], Image.Resampling.BILINEAR
            )
        )
    image = show_cam_on_image(rgb, np.clip(heatmap, 0, 1), use_rgb=True)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def overlay_base64(grey: np.ndarray, heatmap: np.ndarray) -> str:
    return base64.b64encode(overlay_png(grey, heatmap)).decode()

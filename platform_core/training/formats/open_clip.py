"""open_clip checkpoints (vision tower only) -> timm ViT state dicts.

Hub releases hold `open_clip_config.json` and `open_clip_pytorch_model.bin` (or
`open_clip_model.safetensors`). Two vision towers exist: a timm model under `visual.trunk.` (BiomedCLIP),
whose tensors are timm's already, and open_clip's own VisionTransformer (`visual.conv1`,
`visual.transformer.resblocks`), renamed here to timm's CLIP ViT (`vit_*_clip_*`, pre-norm). The
projection to the joint embedding becomes the `head` (replaced by the job's classifier anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from platform_core.errors import Invalid

State = dict[str, torch.Tensor]

_NATIVE_SWAPS = (
    ("conv1", "patch_embed.proj"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("attn.in_proj_", "attn.qkv."),
    ("attn.out_proj", "attn.proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def _timm_trunk(visual: State) -> State:
    out = {k.removeprefix("trunk."): v for k, v in visual.items() if k.startswith("trunk.")}
    proj = visual.get("head.proj.weight")
    if proj is not None:
        out["head.weight"] = proj
        out["head.bias"] = visual.get("head.proj.bias", torch.zeros(proj.shape[0]))
    return out


def _native(visual: State) -> State:
    out: State = {}
    for key, value in visual.items():
        if key == "proj":
            out["head.weight"] = value.t().contiguous()
            out["head.bias"] = torch.zeros(value.shape[1])
            continue
        if key == "class_embedding":
            out["cls_token"] = value[None, None]
            continue
        if key.startswith("attn_pool"):
            raise Invalid("open_clip towers with attention pooling (CoCa) are not supported", param="file")
        new = key
        for old, repl in _NATIVE_SWAPS:
            new = new.replace(old, repl)
        out[new] = value[None] if new == "pos_embed" else value
    return out


def convert(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> State:
    state = {k.removeprefix("module."): v for k, v in state.items()}
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise Invalid("the open_clip checkpoint holds no vision tower (no 'visual.' tensors)", param="file")
    if any(k.startswith("trunk.") for k in visual):
        return _timm_trunk(visual)
    if "class_embedding" in visual:
        return _native(visual)
    raise Invalid("the open_clip vision tower is neither a timm trunk nor a ViT (ResNet towers are not "
                  "supported)", param="file")  # fmt: skip

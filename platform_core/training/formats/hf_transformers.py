"""Hugging Face transformers vision checkpoints (Dinov2, ViT, SigLIP vision) -> timm ViT state dicts.

A `save_pretrained` folder holds `config.json` and `model.safetensors` (or `pytorch_model.bin`). The
mapping renames tensors and fuses query/key/value into timm's `qkv`; nothing of transformers runs, so
the platform does not need transformers installed to use these weights. Both the published layout
(`attention.attention.query`) and transformers 5's in-memory names (`attention.q_proj`) are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from platform_core.errors import Invalid

State = dict[str, torch.Tensor]

# transformers 5 names in memory -> the published layout, so one table maps both.
_V5_NAMES = (
    (r"^layers\.", "encoder.layer."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
)

# published per-layer names -> timm block names (Dinov2 and ViT share the attention layout)
_BLOCK = {
    "norm1": "norm1",  # dinov2
    "norm2": "norm2",
    "layernorm_before": "norm1",  # vit
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_LAYER_SCALE = {"layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_DROPPED = ("embeddings.mask_token", "pooler.")


def _published_names(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> State:
    out: State = {}
    for key, value in state.items():
        for prefix in prefixes:
            key = key.removeprefix(prefix)
        for pattern, repl in _V5_NAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _fuse_qkv(state: State, src: str, names: tuple[str, str, str], dst: str) -> State:
    """Concatenate separate q, k, v projections (weight and bias) into one timm `qkv` linear."""
    fused: State = {}
    for part in ("weight", "bias"):
        keys = [f"{src}.{n}.{part}" for n in names]
        if all(k in state for k in keys):
            fused[f"{dst}.{part}"] = torch.cat([state.pop(k) for k in keys], 0)
    return fused


def _block_name(key: str, suffix: str) -> str:
    if suffix in _LAYER_SCALE:
        return _LAYER_SCALE[suffix]
    name, _, part = suffix.rpartition(".")
    if name not in _BLOCK:
        raise Invalid(f"unexpected tensor '{key}' in the transformers checkpoint", param="file")
    return f"{_BLOCK[name]}.{part}"


def dinov2_or_vit(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> State:
    if config.get("use_swiglu_ffn"):
        raise Invalid("Dinov2 checkpoints with a SwiGLU MLP (giant) are not supported", param="file")
    src = _published_names(state, ("dinov2.", "vit."))
    out: State = {}
    layer = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
    for i in sorted({int(m.group(1)) for k in src if (m := layer.match(k))}):
        base = f"encoder.layer.{i}"
        out.update(
            _fuse_qkv(src, f"{base}.attention.attention", ("query", "key", "value"), f"blocks.{i}.attn.qkv")
        )
    for key, value in src.items():
        if key.startswith(_DROPPED):
            continue
        if (m := layer.match(key)) is not None:
            out[f"blocks.{m.group(1)}.{_block_name(key, m.group(2))}"] = value
        elif key in _TOP:
            out[_TOP[key]] = value
        else:
            raise Invalid(f"unexpected tensor '{key}' in the transformers checkpoint", param="file")
    return out


_SIGLIP = (
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"^encoder\.layers\.(\d+)\.layer_norm1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.(\d+)\.layer_norm2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
    (r"^post_layernorm\.", "norm."),
    (r"^head\.attention\.out_proj\.", "attn_pool.proj."),
    (r"^head\.layernorm\.", "attn_pool.norm."),
    (r"^head\.mlp\.", "attn_pool.mlp."),
)


def siglip_vision(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> State:
    """SiglipVisionModel (or the vision half of a SiglipModel) -> timm's `vit_*_siglip_*` layout."""
    src = {k.removeprefix("vision_model."): v for k, v in state.items() if not k.startswith("text_model.")}
    src = {k: v for k, v in src.items() if k not in ("logit_scale", "logit_bias")}
    out: State = {}
    layer = re.compile(r"^encoder\.layers\.(\d+)\.")
    for i in sorted({int(m.group(1)) for k in src if (m := layer.match(k))}):
        base = f"encoder.layers.{i}.self_attn"
        out.update(_fuse_qkv(src, base, ("q_proj", "k_proj", "v_proj"), f"blocks.{i}.attn.qkv"))
    for key, value in src.items():
        if key == "embeddings.position_embedding.weight":
            out["pos_embed"] = value[None]
        elif key == "head.probe":
            out["attn_pool.latent"] = value
        elif key.startswith("head.attention.in_proj_"):
            part = key.rsplit("_", 1)[1]
            dim = value.shape[0] // 3
            out[f"attn_pool.q.{part}"], out[f"attn_pool.kv.{part}"] = value[:dim], value[dim:]
        else:
            new = key
            for pattern, repl in _SIGLIP:
                new = re.sub(pattern, repl, new)
            if new == key:
                raise Invalid(f"unexpected tensor '{key}' in the SigLIP checkpoint", param="file")
            out[new] = value
    return out


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], State]] = {
    "dinov2": dinov2_or_vit,
    "vit": dinov2_or_vit,
    "siglip": siglip_vision,
    "siglip_vision_model": siglip_vision,
}


def convert(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> State:
    model_type = str(config.get("model_type", ""))
    if model_type not in CONVERTERS:
        raise Invalid(
            f"transformers model_type '{model_type}' is not supported; supported: {', '.join(CONVERTERS)}",
            param="format",
        )
    return CONVERTERS[model_type](state, config)

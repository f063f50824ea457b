"""Published checkpoint files (a folder's files, or a zip of them) -> the timm state dict.

Weights are read as data: safetensors, or torch files with `weights_only` (a TorchXRayVision release,
a pickled module, is read through inert stubs). No publisher library is imported.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

import torch

from platform_core.errors import Invalid, PayloadTooLarge
from platform_core.training import formats as F
from platform_core.training.formats import hf_transformers, open_clip, xrv

State = dict[str, torch.Tensor]
MAX_MEMBERS = 64
MAX_UNZIPPED = 16 * 1024**3  # MedSigLIP's whole SigLIP checkpoint is about 3.5 GB


def unzip(data: bytes, max_bytes: int) -> dict[str, bytes]:
    """The files of a zipped folder by base name (the folder itself may or may not be in the zip)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise Invalid("the upload is not a zip of the published folder", param="file") from None
    members = [i for i in archive.infolist() if not i.is_dir() and "__MACOSX" not in i.filename]
    if len(members) > MAX_MEMBERS:
        raise Invalid(f"the zip holds more than {MAX_MEMBERS} files", param="file")
    if sum(i.file_size for i in members) > max_bytes:
        raise PayloadTooLarge(f"the unzipped weights exceed {max_bytes} bytes")
    return {i.filename.rsplit("/", 1)[-1]: archive.read(i) for i in members}


def _tensors(name: str, data: bytes) -> State:
    if name.endswith(".safetensors"):
        from safetensors.torch import load

        return load(data)
    obj: Any = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Invalid(f"{name} holds no state dict of tensors", param="file")
    return dict(obj)


def _weights(fmt: str, files: Mapping[str, bytes]) -> State:
    """Every weights file of the format's group (sharded checkpoints have several)."""
    for name in F.FILES[fmt][-1]:
        stem, ext = name.rsplit(".", 1)
        shards = sorted(n for n in files if n == name or (n.startswith(f"{stem}-") and n.endswith(f".{ext}")))
        if shards:
            state: State = {}
            for shard in shards:
                state.update(_tensors(shard, files[shard]))
            return state
    raise Invalid(f"the {fmt} checkpoint lacks its weights: bring {F.describe_files(fmt)}", param="file")


def _config(name: str, files: Mapping[str, bytes]) -> dict[str, Any]:
    if name not in files:
        return {}
    try:
        config = json.loads(files[name])
    except ValueError:
        raise Invalid(f"{name} is not JSON", param="file") from None
    return config if isinstance(config, dict) else {}


def to_timm(fmt: str, files: Mapping[str, bytes]) -> State:
    """The timm state dict of a published checkpoint's files (name -> bytes)."""
    F.check(fmt)
    if fmt == F.XRV:
        if len(files) != 1:
            raise Invalid("a TorchXRayVision release is one .pt file", param="file")
        return xrv.read(next(iter(files.values())))
    if fmt == F.TRANSFORMERS:
        if "config.json" not in files:
            raise Invalid(
                f"the transformers folder lacks config.json: bring {F.describe_files(fmt)}", param="file"
            )
        return hf_transformers.convert(_weights(fmt, files), _config("config.json", files))
    if fmt == F.OPEN_CLIP:
        return open_clip.convert(_weights(fmt, files), _config("open_clip_config.json", files))
    if len(files) == 1:  # one published timm-layout file (EVA-X's MIM checkpoint)
        from platform_core.training.weights import parse_checkpoint

        name, data = next(iter(files.items()))
        return parse_checkpoint(data, "safetensors" if name.endswith(".safetensors") else "pth")
    return _weights(fmt, files)


def published_upload(fmt: str, data: bytes, max_bytes: int = MAX_UNZIPPED) -> State:
    """A registered upload: a zip of the published folder, or TorchXRayVision's bare release file."""
    if zipfile.is_zipfile(io.BytesIO(data)) and not _is_torch_zip(data):
        return to_timm(fmt, unzip(data, max_bytes))
    return to_timm(fmt, {"upload": data})


def _is_torch_zip(data: bytes) -> bool:
    """torch.save writes a zip too; its members all sit under one folder with a data.pkl."""
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    return any(n.endswith("/data.pkl") for n in names)

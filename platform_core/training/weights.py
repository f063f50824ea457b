"""Where a backbone's starting weights come from: timm's hub, a registered checkpoint, or random.

`"pretrained"` uses the entry's published weights when they can be had (cached or downloadable): timm's
hub weights, or a transformers / open_clip / TorchXRayVision release fetched into the Hugging Face
cache and converted (`formats`); a base model id (`bm_...`) names a checkpoint a user registered with
POST /v1/base-models (a timm .safetensors or .pth, or the published files in their format, in the
object store, verified by sha256); `"random"` is explicit. Torch is imported lazily: the API lists
availability from here without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_core.errors import Invalid
from platform_core.training import formats as F
from platform_core.training.catalog import BackboneEntry

if TYPE_CHECKING:
    import torch

    from platform_core.storage import ObjectStore

log = logging.getLogger("medtune.training")

PRETRAINED = "pretrained"
RANDOM = "random"
BASE_MODEL_PREFIX = "bm_"
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


class WeightsUnavailable(Invalid):
    code = "weights_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="weights")


def how_to_register(entry: BackboneEntry) -> str:
    """What to bring from where, and how to register it: the weights_unavailable error's advice."""
    fmt = entry.weights_format
    what = f"{' and '.join(entry.weights_files)} from {entry.weights_source}"
    upload = "<a zip of that folder>" if fmt in (F.TRANSFORMERS, F.OPEN_CLIP) else "<that file>"
    return (
        f"bring {what} and register it once with POST /v1/base-models (multipart: architecture={entry.name}, "
        f"format={fmt}, name=<any>, file={upload}), then create the job with weights=<the returned base "
        f"model id>; or use weights='random' for a trial without pretraining"
    )


def unavailable_message(entry: BackboneEntry, why: str) -> str:
    return f"pretrained weights for '{entry.name}' cannot be had here ({why}); {how_to_register(entry)}"


def hub_files(entry: BackboneEntry) -> tuple[tuple[str, ...], ...]:
    """The hub files the entry needs, each as its alternatives (timm's hub: any one weights file)."""
    if entry.weights_file:
        return ((entry.weights_file,),)
    return (HUB_FILES,) if entry.weights_format == F.TIMM else F.FILES[entry.weights_format]


def _repo(entry: BackboneEntry) -> str | None:
    return entry.hf_hub_id.removeprefix("hf-hub:") if entry.hf_hub_id else None


def release_path(entry: BackboneEntry) -> Path:
    """Where a release outside the hub (TorchXRayVision) is kept: beside the Hugging Face cache."""
    from huggingface_hub import constants

    assert entry.weights_url is not None
    return Path(constants.HF_HUB_CACHE) / "medtune-releases" / entry.weights_url.rsplit("/", 1)[-1]


Locate = Callable[[str, str], "str | None"]  # (repo, file name) -> a local path, or None when absent


def _hub_paths(entry: BackboneEntry, locate: Locate) -> dict[str, str] | None:
    """Each of the entry's file groups located: the first alternative there, or its shards (a sharded
    checkpoint has `<name>.index.json` naming them); None when a group has neither."""
    repo = _repo(entry)
    if repo is None:
        return None
    found: dict[str, str] = {}
    for group in hub_files(entry):
        paths = next((p for name in group if (p := _located(repo, name, locate))), None)
        if paths is None:
            return None
        found.update(paths)
    return found


def _located(repo: str, name: str, locate: Locate) -> dict[str, str] | None:
    path = locate(repo, name)
    if path is not None:
        return {name: path}
    index = locate(repo, f"{name}.index.json") if name.endswith((".safetensors", ".bin")) else None
    if index is None:
        return None
    shards = sorted(set(json.loads(Path(index).read_text()).get("weight_map", {}).values()))
    paths = {shard: locate(repo, shard) for shard in shards}
    return {k: v for k, v in paths.items() if v is not None} if shards and all(paths.values()) else None


def _from_cache(repo: str, name: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, name)
    return path if isinstance(path, str) else None


def _from_hub(repo: str, name: str) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(repo, name)
    except EntryNotFoundError:  # try the next alternative; offline and other errors propagate
        return None


def cached_files(entry: BackboneEntry) -> dict[str, str] | None:
    """The local paths of the entry's published files, or None when one is missing (no network)."""
    if entry.weights_url is not None:
        path = release_path(entry)
        return {path.name: str(path)} if path.is_file() else None
    return _hub_paths(entry, _from_cache)


def pretrained_cached(entry: BackboneEntry) -> bool:
    """Whether the entry's published weights sit in the local cache (no network is touched)."""
    return cached_files(entry) is not None


def fetch_published(entry: BackboneEntry) -> dict[str, bytes]:
    """The published files of a non-timm entry, from the cache or downloaded into it."""
    paths = cached_files(entry)
    try:
        paths = paths or _download(entry)
    except Exception as exc:  # offline hub, gated repos, HTTP errors: all mean "not here"
        why = f"download failed: {type(exc).__name__}"
        raise WeightsUnavailable(unavailable_message(entry, why)) from None
    return {name: Path(path).read_bytes() for name, path in paths.items()}


def _download(entry: BackboneEntry) -> dict[str, str]:
    if entry.weights_url is not None:
        import urllib.request

        path = release_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        urllib.request.urlretrieve(entry.weights_url, partial)  # noqa: S310 - a fixed https URL
        partial.replace(path)
        return {path.name: str(path)}
    found = _hub_paths(entry, _from_hub)
    if found is None:
        raise FileNotFoundError(f"{', '.join(entry.weights_files)} not in {entry.weights_source}")
    return found


def load_published(entry: BackboneEntry) -> dict[str, torch.Tensor]:
    """The entry's published weights converted to its timm architecture."""
    from platform_core.training.formats.read import to_timm

    return to_timm(entry.weights_format, fetch_published(entry))


def validate_spec(spec: str) -> str:
    if spec in (PRETRAINED, RANDOM) or spec.startswith(BASE_MODEL_PREFIX):
        return spec
    raise Invalid(
        f"weights must be 'pretrained', 'random' or a registered base model id (bm_...), got '{spec}'",
        param="weights",
    )


@dataclass(frozen=True)
class ResolvedWeights:
    kind: str  # pretrained | registered | random
    source: str  # the hub id, the base model id, or "random"
    sha256: str | None
    state_dict: dict[str, torch.Tensor] | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_registered(store: ObjectStore, key: str, sha256: str, fmt: str) -> dict[str, torch.Tensor]:
    """Read a registered checkpoint and refuse it when its bytes no longer match the recorded hash."""
    try:
        data = store.get_bytes(key)
    except KeyError:
        raise WeightsUnavailable(
            f"the registered weights object '{key}' is missing from the object store"
        ) from None
    actual = sha256_bytes(data)
    if actual != sha256:
        raise WeightsUnavailable(
            f"the registered weights changed since registration (sha256 {actual} != {sha256})"
        )
    return parse_checkpoint(data, fmt)


def parse_checkpoint(data: bytes, fmt: str) -> dict[str, torch.Tensor]:
    """A registered checkpoint as a timm state dict: `fmt` is safetensors, pth or a published format."""
    import torch

    if fmt in F.FORMATS:
        from platform_core.training.formats.read import published_upload

        return published_upload(fmt, data)
    if fmt == "safetensors":
        from safetensors.torch import load

        return load(data)
    # weights_only: a .pth is data, never code to run.
    try:
        obj: Any = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # training checkpoints keep their arguments (argparse.Namespace, ...): read through inert stubs
        from platform_core.training.formats.pickled import module_state_dict

        obj = module_state_dict(data)
    for key in ("state_dict", "model", "module", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Invalid("the checkpoint holds no state dict of tensors", param="file")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_format(filename: str, data: bytes, fmt: str = F.TIMM) -> str:
    """What a registration stores as its format: safetensors or pth for timm, else the published format."""
    F.check(fmt)
    if fmt != F.TIMM:
        F.check_upload(fmt, filename)
        return fmt
    if filename.endswith(".safetensors"):
        return "safetensors"
    if filename.endswith((".pth", ".pt", ".bin", ".ckpt")):
        return "pth"
    raise Invalid("weights files must be .safetensors, .pth, .pt or .bin", param="file")


def reachable(entry: BackboneEntry) -> bool:
    """Whether the entry's published files can be downloaded from here now (a few HEAD requests)."""
    try:
        if entry.weights_url is not None:
            import urllib.request

            request = urllib.request.Request(entry.weights_url, method="HEAD")
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - a fixed https URL
                return True
        repo = _repo(entry)
        if repo is None:
            return False
        from huggingface_hub import file_exists

        return all(any(file_exists(repo, name) for name in group[:2]) for group in hub_files(entry))
    except Exception:  # offline mode, DNS, proxies, gated repos: all mean "not from here"
        return False


def check_registered_files(store: ObjectStore, key: str, fmt: str) -> None:
    """A zipped published folder must hold the format's files; the upload is removed when it does not."""
    if fmt not in (F.TRANSFORMERS, F.OPEN_CLIP):
        return
    import zipfile

    try:
        names = zipfile.ZipFile(io.BytesIO(store.get_bytes(key))).namelist()
    except zipfile.BadZipFile:
        names = None
    missing = F.missing_files(fmt, names) if names is not None else None
    if names is None or missing:
        store.delete(key)
        what = "is not a zip" if names is None else f"lacks {', '.join(missing or [])}"
        raise Invalid(f"the {fmt} upload {what}: bring {F.describe_files(fmt)} zipped", param="file")

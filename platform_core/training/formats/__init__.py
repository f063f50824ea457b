"""The formats foundation models are published in, and which files each needs (torch-free).

`timm` is a state dict for the catalog architecture (.safetensors or .pth), as timm's hub holds them.
`transformers` is a `save_pretrained` folder, `open_clip` an open_clip hub release, `torchxrayvision`
a TorchXRayVision release file. `read.to_timm` converts each to the timm state dict that training and
serving load; the catalog and the API use only the names here, so they need no torch.
"""

from __future__ import annotations

from platform_core.errors import Invalid

TIMM = "timm"
TRANSFORMERS = "transformers"
OPEN_CLIP = "open_clip"
XRV = "torchxrayvision"
FORMATS = (TIMM, TRANSFORMERS, OPEN_CLIP, XRV)

# What to bring for each format; the first file of each alternative group is what the publishers ship.
FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    TIMM: (("model.safetensors", "pytorch_model.bin"),),
    TRANSFORMERS: (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    OPEN_CLIP: (("open_clip_pytorch_model.bin", "open_clip_model.safetensors"),),
    XRV: (),  # one release file; its name is in the catalog entry
}


def check(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, got '{fmt}'", param="format")
    return fmt


def describe_files(fmt: str, release_file: str | None = None) -> str:
    """The files to bring, in words: 'config.json and model.safetensors (or pytorch_model.bin)'."""
    groups = list(FILES[fmt]) + ([(release_file,)] if release_file else [])
    parts = [g[0] + (f" (or {' or '.join(g[1:])})" if len(g) > 1 else "") for g in groups]
    return " and ".join(parts)


def check_upload(fmt: str, filename: str) -> None:
    """A published checkpoint is uploaded as a zip of its folder (TorchXRayVision: its one .pt file)."""
    allowed = (".zip", ".pt", ".pth") if fmt == XRV else (".zip",)
    if not filename.lower().endswith(allowed):
        raise Invalid(
            f"a {fmt} checkpoint is uploaded as {' or '.join(allowed)}: bring {describe_files(fmt) or 'it'}",
            param="file",
        )


def missing_files(fmt: str, names: list[str]) -> list[str]:
    """The files a zipped published folder lacks (by base name; sharded weights count as present)."""
    bases = {n.rsplit("/", 1)[-1] for n in names}
    missing = []
    for group in FILES[fmt]:
        stems = tuple(g.rsplit(".", 1)[0] + "-" for g in group)
        if not any(b in group or b.startswith(stems) for b in bases):
            missing.append(group[0])
    return missing

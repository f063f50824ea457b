"""What the API and the inference tier send each other: a prediction request (the version's manifest and
the decoded image bodies), and the catalog entry the tier infers for a timm name outside the catalog.

Layout: a 4-byte big-endian length, that many bytes of JSON header {"manifest", "sizes", "explain"},
then the image bodies back to back. Not multipart: Starlette spools multipart files to disk past 1 MB,
and identified bytes never reach disk; this is read in memory in one pass. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from platform_core.artifacts import ArtifactError, ModelManifest
from platform_core.errors import BadRequest, Invalid
from platform_core.training.backbone_entry import BackboneEntry

MEDIA_TYPE = "application/vnd.medtune.predict"
_LEN = 4
MAX_HEADER = 1024 * 1024  # a manifest is a few KB


@dataclass(frozen=True)
class TierRequest:
    manifest: ModelManifest
    bodies: list[bytes]
    explain: bool


def encode(manifest: ModelManifest, bodies: list[bytes], explain: bool) -> bytes:
    header = json.dumps(
        {"manifest": manifest.to_json(), "sizes": [len(b) for b in bodies], "explain": explain}
    ).encode()
    return b"".join([len(header).to_bytes(_LEN, "big"), header, *bodies])


def decode(raw: bytes, max_images: int) -> TierRequest:
    """The request, checked: framing, header, image count and sizes; a bad body is a 400/422."""
    if len(raw) < _LEN:
        raise BadRequest(f"send {MEDIA_TYPE}: a 4-byte header length first")
    size = int.from_bytes(raw[:_LEN], "big")
    if size > min(MAX_HEADER, len(raw) - _LEN):
        raise BadRequest("the header length runs past the body")
    try:
        header: Any = json.loads(raw[_LEN : _LEN + size])
        sizes = [int(s) for s in header["sizes"]]
        manifest = ModelManifest.from_json(header["manifest"])
        explain = bool(header.get("explain", False))
    except (ValueError, TypeError, KeyError, AttributeError, ArtifactError) as exc:
        raise BadRequest(f"the header is not a prediction request ({type(exc).__name__})") from None
    if not sizes or len(sizes) > max_images:
        raise Invalid(f"{len(sizes)} images in one request; 1 to {max_images} are served", param="file")
    start = _LEN + size
    if any(s < 0 for s in sizes) or start + sum(sizes) != len(raw):
        raise BadRequest("the image sizes do not add up to the body")
    bodies = []
    for s in sizes:
        bodies.append(raw[start : start + s])
        start += s
    return TierRequest(manifest, bodies, explain)


def entry_to_json(entry: BackboneEntry) -> dict[str, Any]:
    return asdict(entry)


def entry_from_json(d: dict[str, Any]) -> BackboneEntry:
    targets = d["lora_targets"]
    return BackboneEntry(**{
        **d, "mean": tuple(d["mean"]), "std": tuple(d["std"]),
        "lora_targets": targets if isinstance(targets, str) else tuple(targets),
    })  # fmt: skip

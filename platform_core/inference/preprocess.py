"""Request bytes -> the model's input tensor, by the very functions ingestion and training use.

DICOM: parse, the dataset's header filters, decode with LUTs/windowing, the pixel-cache scaling
(platform_core.dicom); PNG/JPEG: the image decoder ingestion uses. Then training's own resize,
[0, 1] conversion (CacheDataset, no augmentation, as in evaluation) and normalisation (Normalize).
Nothing here writes or logs the bytes it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from platform_core.artifacts import Preprocessing as Preprocessing  # re-exported: its fields live there
from platform_core.dicom import pixels
from platform_core.dicom.read import DEFAULT_CAPS, Caps, Rejected, looks_like_dicom, parse
from platform_core.dicom.validate import Filters, check
from platform_core.errors import Invalid, UnsupportedMediaType

if TYPE_CHECKING:  # torch is imported where tensors are made, so the API can read manifests without it
    import torch

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def filters(prep: Preprocessing) -> Filters:
    """The dataset's header filters the model version was trained behind."""
    return Filters(prep.min_image_size, frozenset(prep.modalities), prep.burned_in_annotation)


def sniff(data: bytes) -> str:
    """'dicom', 'png' or 'jpeg' from the bytes themselves (a declared media type is only a hint)."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if looks_like_dicom(data):
        return "dicom"
    return "unknown"


def cache_pixels(data: bytes, prep: Preprocessing, caps: Caps = DEFAULT_CAPS) -> np.ndarray:
    """The uint16 array ingestion would have written to the pixel cache for these bytes.

    Sizes are checked from the header before anything decodes: caps.max_pixels for every kind,
    caps.max_inflated_bytes for deflated DICOM.
    """
    kind = sniff(data)
    try:
        if kind in ("png", "jpeg"):
            _check_image_size(data, prep, caps)
            img = pixels.decode_image(data, caps.max_pixels)
        else:
            try:
                parsed = parse(data, caps)
            except Rejected as exc:
                if exc.reason == "not_dicom":
                    raise UnsupportedMediaType(
                        "the body is neither DICOM, PNG nor JPEG", param="file"
                    ) from None
                raise
            check(parsed.dataset, filters(prep))
            img = pixels.decode(parsed.dataset, caps.max_pixels)
        return pixels.to_cache(img, prep.cache_size)
    except Rejected as exc:
        raise Invalid(f"the image was rejected: {exc}", param="file") from None


def _check_image_size(data: bytes, prep: Preprocessing, caps: Caps) -> None:
    with pixels.open_image(data, caps.max_pixels) as img:
        width, height = img.size
    if min(width, height) < prep.min_image_size:
        raise Rejected("too_small")


def to_input(cached: np.ndarray, prep: Preprocessing) -> torch.Tensor:
    """Cache pixels -> the normalised 3 x S x S tensor, through training's own code."""
    import torch

    from platform_core.training.data import CacheDataset, Normalize, resize_uint16

    resized = resize_uint16(cached, prep.image_size)[None]
    x, _ = CacheDataset(resized, np.zeros((1, 1), dtype=np.float32))[0]
    with torch.no_grad():
        out: torch.Tensor = Normalize(prep.mean, prep.std)(x[None])[0]
    return out


def preprocess(
    data: bytes, prep: Preprocessing, caps: Caps = DEFAULT_CAPS
) -> tuple[torch.Tensor, np.ndarray]:
    """(model input, the [0, 1] grey image at model size for overlays)."""
    cached = cache_pixels(data, prep, caps)
    x = to_input(cached, prep)
    from platform_core.training.data import resize_uint16

    grey = resize_uint16(cached, prep.image_size).astype(np.float32) / 65535.0
    return x, grey

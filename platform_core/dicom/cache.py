"""The pixel cache format: one 16-bit grayscale PNG per image, longest side = the dataset's cache_size.

Ingestion writes it once (after LUTs, windowing and MONOCHROME1 inversion, scaled to 0..65535);
training and serving read it and never decode DICOM again.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

CONTENT_TYPE = "image/png"


def encode(pixels: np.ndarray) -> bytes:
    """uint16 (H, W) array -> PNG bytes."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f"the pixel cache holds 2-D uint16 arrays, got {pixels.dtype} {pixels.shape}")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """PNG bytes -> uint16 (H, W) array."""
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img)
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr.astype(np.uint16)
    return arr


def content_hash(pixels: np.ndarray) -> str:
    """The identity of pixel content, for leakage checks: same pixels, same hash."""
    h = hashlib.sha256()
    h.update(f"{pixels.shape[0]}x{pixels.shape[1]}".encode())
    h.update(np.ascontiguousarray(pixels, dtype="<u2").tobytes())
    return h.hexdigest()

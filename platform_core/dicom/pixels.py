"""Pixels once: decode (pydicom's plugins, pylibjpeg included), LUTs/windowing, MONOCHROME1, resize.

The result is the 2-D uint16 array the pixel cache (platform_core.dicom.cache) stores.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from platform_core.dicom.read import Rejected

# Below this spread (on the 0..1 scale after windowing) an image is blank, saturated or a test pattern.
ARTIFACT_STD = 0.01


def decode(ds: Dataset) -> np.ndarray:
    """The first frame as float32 grayscale, presentation-ready (LUTs applied, MONOCHROME1 inverted)."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception:
        raise Rejected("undecodable") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return _luminance(arr)
    if arr.ndim != 2:
        raise Rejected("undecodable")
    try:
        out = apply_modality_lut(arr, ds)
        out = apply_voi_lut(out, ds, index=0)
    except Exception:
        raise Rejected("undecodable") from None
    out = np.asarray(out, dtype=np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = out.max() + out.min() - out
    return out


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> float32 grayscale (for image datasets such as MURA or ChestX-ray14)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return np.asarray(img, dtype=np.float32)
            if img.mode not in ("L", "RGB"):
                arr = np.asarray(img.convert("RGB"))
            else:
                arr = np.asarray(img)
    except Exception:
        raise Rejected("undecodable") from None
    return _luminance(arr) if arr.ndim == 3 else arr.astype(np.float32)


def _luminance(arr: np.ndarray) -> np.ndarray:
    rgb = arr[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_cache(img: np.ndarray, cache_size: int) -> np.ndarray:
    """Scale to 0..1, refuse near-constant images, resize to longest side cache_size, uint16."""
    img = np.asarray(img, dtype=np.float32)
    if not np.isfinite(img).all():
        img = np.nan_to_num(img)
    lo, hi = float(img.min()), float(img.max())
    if hi - lo <= 0:
        raise Rejected("artifact")
    norm = (img - lo) / (hi - lo)
    if float(norm.std()) < ARTIFACT_STD:
        raise Rejected("artifact")
    h, w = norm.shape
    scale = cache_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        resized = Image.fromarray(norm, mode="F").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        norm = np.asarray(resized, dtype=np.float32)
    return np.clip(norm * 65535.0 + 0.5, 0, 65535).astype(np.uint16)

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

from platform_core.dicom.read import DEFAULT_MAX_PIXELS, Rejected, check_pixels, over_pixels

# Below this spread (on the 0..1 scale after windowing) an image is blank, saturated or a test pattern.
ARTIFACT_STD = 0.01
# Integer images whose stored values span at most this many codes go through a lookup table.
MAX_LUT_ENTRIES = 1 << 17
# PIL's own bomb guard (a warning past it, an error past twice it) as a backstop behind MAX_PIXELS,
# which decode_image checks from the header first; open_image raises it for a larger configured cap.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS


def decode(ds: Dataset, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The first frame as float32 grayscale, presentation-ready (LUTs applied, MONOCHROME1 inverted).

    The header's size is checked against `max_pixels` first: an RLE or JPEG file can declare far
    more pixels than its bytes hold, and decoding would allocate them all.
    """
    check_pixels(ds, max_pixels)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        arr = pixel_array(ds, index=0 if frames > 1 else None)
    except Exception:
        raise Rejected("undecodable") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return _luminance(arr)
    if arr.ndim != 2 or arr.size == 0:
        raise Rejected("undecodable")
    try:
        out = _presentation(arr, ds)
    except Exception:
        raise Rejected("undecodable") from None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # Any constant works: to_cache rescales by the image's own range.
        out = np.subtract(out.max() + out.min(), out, dtype=np.float32)
    return out


def _presentation(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT then VOI LUT or window, as pydicom defines them, applied per stored value.

    Both are functions of the stored value alone, so for integer pixels pydicom evaluates them once
    per code in the image's range (a few thousand values) and the image is one table lookup, instead
    of float64 arithmetic over every pixel.
    """
    if arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < MAX_LUT_ENTRIES:
            codes = np.arange(lo, hi + 1, dtype=arr.dtype)
            lut = np.asarray(apply_voi_lut(apply_modality_lut(codes, ds), ds, index=0), dtype=np.float32)
            index = arr if lo == 0 else np.subtract(arr, lo, dtype=np.int32)
            out: np.ndarray = np.take(lut, index)
            return out
    return np.asarray(apply_voi_lut(apply_modality_lut(arr, ds), ds, index=0), dtype=np.float32)


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """PNG/JPEG opened lazily (header only) and its declared size checked against `max_pixels`.

    Raises Rejected: `too_large` past the cap, `undecodable` when the header cannot be read.
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise Rejected("too_large", f"the image is over {max_pixels:,} pixels (MEDTUNE_MAX_PIXELS)") from None
    except Exception:
        raise Rejected("undecodable") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise Rejected("too_large", over_pixels(width * height, max_pixels))
    return img


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG/JPEG bytes -> float32 grayscale (for image datasets such as MURA or ChestX-ray14)."""
    img = open_image(data, max_pixels)
    try:
        with img:
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
    """Scale to 0..65535, refuse near-constant images, resize to longest side cache_size (uint16)."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        raise Rejected("undecodable")
    if not np.isfinite(img).all():
        img = np.nan_to_num(img)
    lo, hi = float(img.min()), float(img.max())
    if hi - lo <= 0:
        raise Rejected("artifact")
    norm = np.subtract(img, np.float32(lo), dtype=np.float32)
    norm *= np.float32(1.0 / (hi - lo))
    if float(norm.std()) < ARTIFACT_STD:
        raise Rejected("artifact")
    norm *= np.float32(65535.0)
    norm += np.float32(0.5)
    np.clip(norm, 0, 65535, out=norm)
    full = norm.astype(np.uint16)
    return resize(full, cache_size)


def resize(pixels: np.ndarray, cache_size: int) -> np.ndarray:
    """uint16 (H, W) -> longest side cache_size: area average when shrinking, bilinear when growing."""
    h, w = pixels.shape
    scale = cache_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return pixels
    # PIL resizes 16-bit images natively ("I;16"): no float copy of a full-size radiograph.
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    out: np.ndarray = np.asarray(Image.fromarray(pixels).resize(size, method), dtype=np.uint16)
    return out

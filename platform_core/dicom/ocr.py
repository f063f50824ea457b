"""Words burned into an image's pixels, read by Tesseract in memory (tesserocr, Debian's tesseract-ocr-eng).

One engine per process and thread, made on first use: loading the model costs more than reading one
radiograph. Nothing is written to disk: the pixels go to Tesseract as an in-memory image.
"""

from __future__ import annotations

import glob
import os
import threading
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from tesserocr import PyTessBaseAPI

# Burned-in annotations are large (names and IDs are set to be read on a monitor): reading at this
# long side finds them and bounds the cost of a full-size radiograph (see bench/ocr.py).
MAX_SIDE = 1600
# Text pixels: within this share of the range from the brightest (or darkest) value.
EXTREME_BAND = 0.02
MIN_TEXT_PIXELS = 40
MAX_EXTREME_SHARE = 0.5
# A reduced pixel is text when at least this much (of 255) of it was.
STROKE_COVERAGE = 96
TESSDATA_GLOBS = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)

_local = threading.local()


class OcrUnavailable(RuntimeError):
    """Tesseract's English data is missing: the screen cannot run, so nothing may pass it."""


def tessdata_dir() -> str:
    """TESSDATA_PREFIX when it is set, else the first system folder that holds eng.traineddata."""
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    for pattern in TESSDATA_GLOBS:
        candidates.extend(sorted(glob.glob(pattern), reverse=True))
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "eng.traineddata")):
            return folder.rstrip("/") + "/"
    raise OcrUnavailable(
        "Tesseract's English data (eng.traineddata) was not found: install tesseract-ocr-eng "
        "(scripts/install-system.sh) or set TESSDATA_PREFIX"
    )


def _engine() -> PyTessBaseAPI:
    api: PyTessBaseAPI | None = getattr(_local, "api", None)
    if api is None:
        import tesserocr

        # Leptonica reports odd boxes in speckled masks on stderr ("Error in boxClipToRectangle"):
        # harmless there, noise in a worker's log.
        tesserocr.set_leptonica_log_level(tesserocr.LeptLogLevel.NONE)
        # Sparse text: annotations sit in corners and along edges, not in paragraphs.
        api = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="eng", psm=tesserocr.PSM.SPARSE_TEXT)
        _local.api = api
    return api


def extreme_masks(img: np.ndarray, max_side: int = MAX_SIDE) -> list[Image.Image]:
    """The pixels at the bright and at the dark end of the display range, each as black-on-white.

    Modalities burn text in at an extreme of the range so that it reads on any anatomy; on a textured
    radiograph Tesseract's own global threshold loses it, while the extreme pixels alone are clean
    text (and whatever anatomy saturates). Masks are made at full resolution and then reduced, so thin
    strokes survive the downscale.
    """
    arr = np.asarray(img, dtype=np.float32)
    if not np.isfinite(arr).all():
        arr = np.nan_to_num(arr)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return []
    h, w = arr.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    band = EXTREME_BAND * (hi - lo)
    out = []
    for mask in (arr >= hi - band, arr <= lo + band):
        share = float(mask.mean())
        if share * arr.size < MIN_TEXT_PIXELS or share > MAX_EXTREME_SHARE:
            continue  # no room for a word, or a saturated background that holds none legibly
        text = Image.fromarray(mask.astype(np.uint8) * np.uint8(255), mode="L")
        if size != (w, h):
            text = text.resize(size, Image.Resampling.BOX)
        out.append(text.point(lambda v: 0 if v >= STROKE_COVERAGE else 255))
    return out


def read_lines(img: np.ndarray, max_side: int = MAX_SIDE) -> list[list[str]]:
    """The text Tesseract finds at either extreme of the image, as lines of whitespace-separated words."""
    lines: list[list[str]] = []
    masks = extreme_masks(img, max_side)
    if not masks:
        return lines
    api = _engine()
    for mask in masks:
        api.SetImage(mask)
        lines.extend(line.split() for line in api.GetUTF8Text().splitlines() if line.strip())
    api.Clear()
    return lines

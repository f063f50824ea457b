"""Words in an image's pixels, read by Tesseract in memory (tesserocr; Debian's tesseract-ocr-eng data).

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

        # Sparse text: annotations sit in corners and along edges, not in paragraphs.
        api = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="eng", psm=tesserocr.PSM.SPARSE_TEXT)
        _local.api = api
    return api


def to_gray8(img: np.ndarray, max_side: int = MAX_SIDE) -> Image.Image:
    """Float grayscale (presentation-ready) -> 8-bit, long side at most max_side."""
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape
    scale = min(1.0, max_side / max(h, w))
    pil = Image.fromarray(arr, mode="F")
    if scale < 1.0:
        pil = pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    small = np.asarray(pil, dtype=np.float32)
    lo, hi = float(small.min()), float(small.max())
    span = hi - lo if hi > lo else 1.0
    return Image.fromarray(((small - lo) * (255.0 / span)).clip(0, 255).astype(np.uint8), mode="L")


def read_lines(img: np.ndarray, max_side: int = MAX_SIDE) -> list[list[str]]:
    """The text Tesseract finds, as lines of whitespace-separated words."""
    api = _engine()
    api.SetImage(to_gray8(img, max_side))
    text: str = api.GetUTF8Text()
    api.Clear()
    return [line.split() for line in text.splitlines() if line.strip()]

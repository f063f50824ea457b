"""The pixel cache format: one 2-D uint16 .npy array per image, longest side = the dataset's cache_size.

Ingestion writes it once (after LUTs, windowing and MONOCHROME1 inversion, scaled to 0..65535);
training and serving read it and never decode DICOM again. NumPy's .npy format (no pickles) rather
than a 16-bit PNG: zlib made the encode cost about 20 ms per 512 px image, over ten times the rest of
the pixel work, while the object is only about twice the size. Caches written as PNG by earlier
versions still decode.
"""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np

CONTENT_TYPE = "application/x-npy"
SUFFIX = ".npy"
NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encode(pixels: np.ndarray) -> bytes:
    """uint16 (H, W) array -> .npy bytes (little endian, C order)."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f"the pixel cache holds 2-D uint16 arrays, got {pixels.dtype} {pixels.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(pixels, dtype="<u2"), allow_pickle=False)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """.npy (or legacy 16-bit PNG) bytes -> uint16 (H, W) array."""
    if data.startswith(PNG_MAGIC):
        return _decode_png(data)
    if not data.startswith(NPY_MAGIC):
        raise ValueError("not a pixel cache object (.npy or PNG expected)")
    arr = _read_own_npy(data)
    if arr is None:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.ndim != 2:
        raise ValueError(f"the pixel cache holds 2-D arrays, got shape {arr.shape}")
    out: np.ndarray = arr.astype(np.uint16, copy=False)
    return out


def _read_own_npy(data: bytes) -> np.ndarray | None:
    """The array of a header encode() wrote, read without np.load; None for any other header.

    np.load parses the header with ast.literal_eval, and CPython 3.11 before 3.11.8 can raise
    "SystemError: AST constructor recursion depth mismatch" when threads compile at once
    (gh-106905): the training loader's prefetch threads decode caches concurrently.
    """
    major = data[6] if len(data) > 7 else 0
    start = 10 if major == 1 else 12
    length = int.from_bytes(data[8:start], "little")
    match = _OWN_HEADER.fullmatch(data[start : start + length].decode("latin1"))
    if major not in (1, 2, 3) or match is None:
        return None
    rows, columns = int(match["rows"]), int(match["columns"])
    flat = np.frombuffer(data, dtype="<u2", count=rows * columns, offset=start + length)
    return flat.reshape((rows, columns), order="F" if match["fortran"] == "True" else "C").copy()


_OWN_HEADER = re.compile(
    r"\{'descr': '<u2', 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<rows>\d+), (?P<columns>\d+)\), \}\s*"
)


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img)
    if arr.dtype != np.uint16:
        arr = arr.astype(np.uint16) * 257 if arr.dtype == np.uint8 else arr.astype(np.uint16)
    return arr


def content_hash(pixels: np.ndarray) -> str:
    """The identity of pixel content, for leakage checks: same pixels, same hash."""
    h = hashlib.sha256()
    h.update(f"{pixels.shape[0]}x{pixels.shape[1]}".encode())
    h.update(np.ascontiguousarray(pixels, dtype="<u2").data.cast("B"))
    return h.hexdigest()

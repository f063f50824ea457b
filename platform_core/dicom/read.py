"""Parse uploaded bytes into a pydicom Dataset in memory, or say why not (not_dicom, corrupt)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

PREAMBLE_END = 132


class Rejected(Exception):
    """A file the pipeline refuses, with the reason users see."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Parsed:
    dataset: Dataset
    size: int


def looks_like_dicom(head: bytes) -> bool:
    return len(head) >= PREAMBLE_END and head[128:132] == b"DICM"


def parse(data: bytes) -> Parsed:
    """Read the whole header now, so a truncated or malformed file fails here, not later."""
    if len(data) < 8:
        raise Rejected("not_dicom")
    try:
        ds = dcmread(io.BytesIO(data), force=not looks_like_dicom(data))
    except InvalidDicomError:
        raise Rejected("not_dicom") from None
    except Exception:
        raise Rejected("corrupt" if looks_like_dicom(data) else "not_dicom") from None
    if not looks_like_dicom(data) and "SOPClassUID" not in ds:
        # force=True reads anything; without the DICM marker demand a real header.
        raise Rejected("not_dicom")
    try:
        for _elem in ds.iterall():
            pass
        if "PixelData" in ds:
            _check_native_length(ds)
    except Rejected:
        raise
    except Exception:
        raise Rejected("corrupt") from None
    return Parsed(ds, len(data))


def _check_native_length(ds: Dataset) -> None:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is not None and ts.is_compressed:
        return
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise Rejected("corrupt") from None
    expected = (expected + 7) // 8 if bits == 1 else expected * (bits // 8)
    if len(ds.PixelData) < expected:
        raise Rejected("corrupt")

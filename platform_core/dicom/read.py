"""Parse uploaded bytes into a pydicom Dataset in memory, or say why not (not_dicom, corrupt, too_large).

Sizes are checked before the work they bound: a Deflated Explicit VR Little Endian body is inflated
here, as a stream, under `Caps.max_inflated_bytes` (pydicom would inflate all of it at once), and an
image whose header declares more than `Caps.max_pixels` is refused before anything decodes it.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, cast

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from platform_core.dicom import codestream

if TYPE_CHECKING:
    from platform_core.config import Settings

PREAMBLE_END = 132
DEFAULT_MAX_PIXELS = 64_000_000  # Settings.max_pixels
DEFAULT_MAX_INFLATED_BYTES = 2 * 1024**3  # Settings.max_upload_bytes
# Compressed bytes fed per step (what zlib copies back as unconsumed input each step stays this small)
# and inflated bytes taken per step (what one step may allocate).
INFLATE_INPUT = 16 * 1024
INFLATE_OUTPUT = 4 * 1024 * 1024
# What header() inflates of a deflated body to read its first elements (the UIDs come early).
HEADER_BYTES = 1024 * 1024


class Rejected(Exception):
    """A file the pipeline refuses, with the reason users see (and, for caps, which limit it broke)."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Caps:
    """The size limits every stage checks before it works (from Settings; the defaults are Settings')."""

    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def of(cls, settings: Settings) -> Caps:
        return cls(settings.max_inflated_bytes or settings.max_upload_bytes, settings.max_pixels)


DEFAULT_CAPS = Caps()


@dataclass(frozen=True)
class Parsed:
    dataset: Dataset
    size: int


def looks_like_dicom(head: bytes) -> bool:
    return len(head) >= PREAMBLE_END and head[128:132] == b"DICM"


def parse(data: bytes, caps: Caps = DEFAULT_CAPS) -> Parsed:
    """Read the whole header now, so a truncated or malformed file fails here, not later."""
    if len(data) < 8:
        raise Rejected("not_dicom")
    ds = load(data, caps)
    if not looks_like_dicom(data) and "SOPClassUID" not in ds:
        # force=True reads anything; without the DICM marker demand a real header.
        raise Rejected("not_dicom")
    try:
        for _elem in ds.iterall():
            pass
        check_pixels(ds, caps.max_pixels)
        if "PixelData" in ds:
            _check_native_length(ds)
    except Rejected:
        raise
    except Exception:
        raise Rejected("corrupt") from None
    return Parsed(ds, len(data))


def load(data: bytes, caps: Caps = DEFAULT_CAPS) -> Dataset:
    """dcmread, except that a deflated body is inflated here under the cap (and stored inflated after)."""
    try:
        return dcmread(_inflated(data, caps.max_inflated_bytes), force=not looks_like_dicom(data))
    except Rejected:
        raise
    except InvalidDicomError:
        raise Rejected("not_dicom") from None
    except Exception:
        raise Rejected("corrupt" if looks_like_dicom(data) else "not_dicom") from None


def header(fh: IO[bytes], tags: list[str]) -> Dataset:
    """The named header elements of a file, pixels never read; a deflated body is inflated only as far
    as HEADER_BYTES (elements past that are missing). Raises whatever pydicom raises."""
    fh.seek(0)
    head = fh.read(PREAMBLE_END)
    if looks_like_dicom(head):
        meta = _read_meta(cast(BinaryIO, fh))
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            body = zlib.decompressobj(-zlib.MAX_WBITS).decompress(fh.read(HEADER_BYTES), HEADER_BYTES)
            out = io.BytesIO(head)
            out.seek(0, io.SEEK_END)
            _write_meta(out, meta)
            out.write(body)
            out.seek(0)
            return dcmread(out, stop_before_pixels=True, specific_tags=tags)
    fh.seek(0)
    return dcmread(fh, force=True, stop_before_pixels=True, specific_tags=tags)


def check_pixels(ds: Dataset, max_pixels: int) -> None:
    """Rows x Columns x frames x samples from the header, and the first compressed frame's own size,
    against the cap, before any decode."""
    try:
        declared = (
            int(ds.get("Rows", 0) or 0)
            * int(ds.get("Columns", 0) or 0)
            * max(1, int(ds.get("NumberOfFrames", 1) or 1))
            * max(1, int(ds.get("SamplesPerPixel", 1) or 1))
        )
    except (TypeError, ValueError):
        raise Rejected("corrupt") from None
    if declared > max_pixels:
        raise Rejected("too_large", over_pixels(declared, max_pixels))
    # A JPEG-family decoder allocates what the compressed frame's own header says.
    frame = codestream.declared_pixels(ds)
    if frame is not None and frame > max_pixels:
        raise Rejected("too_large", over_pixels(frame, max_pixels, "its compressed frame"))


def over_pixels(declared: int, max_pixels: int, what: str = "the image") -> str:
    return f"{what} declares {declared:,} pixels; the limit is {max_pixels:,} (MEDTUNE_MAX_PIXELS)"


def _inflated(data: bytes, cap: int) -> io.BytesIO:
    """The file as pydicom should read it: a deflated body becomes Explicit VR Little Endian."""
    fp = io.BytesIO(data)
    if not looks_like_dicom(data):
        return fp
    fp.seek(PREAMBLE_END)
    meta = _read_meta(fp)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        fp.seek(0)
        return fp
    body = memoryview(data)[fp.tell() :]
    _inflate(body, cap, None)  # a first pass that keeps nothing: a bomb costs time, not memory
    out = io.BytesIO()
    out.write(data[:PREAMBLE_END])
    _write_meta(out, meta)
    _inflate(body, cap, out)
    out.seek(0)
    return out


def _write_meta(out: io.BytesIO, meta: FileMetaDataset) -> None:
    """The file meta, now saying Explicit VR Little Endian (what the inflated body is)."""
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = DicomBytesIO()
    write_file_meta_info(buf, meta, enforce_standard=False)  # updates the group length
    out.write(buf.getvalue())


def _read_meta(fp: BinaryIO) -> FileMetaDataset:
    """The file meta group (always Explicit VR Little Endian), from just past the preamble."""

    def past_group_2(tag: int, vr: str | None, length: int) -> bool:
        return tag >> 16 != 2

    return FileMetaDataset(
        read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=past_group_2)
    )


def _inflate(body: memoryview, cap: int, out: io.BytesIO | None) -> int:
    """Raw deflate (PS3.5 A.5) in bounded steps; past `cap` inflated bytes raises too_large."""
    engine = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0

    def emit(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)
        if total > cap:
            raise Rejected("too_large", f"it inflates past {cap:,} bytes (MEDTUNE_MAX_INFLATED_BYTES)")
        if out is not None:
            out.write(chunk)

    try:
        for pos in range(0, len(body), INFLATE_INPUT):
            pending: bytes | memoryview = body[pos : pos + INFLATE_INPUT]
            while pending and not engine.eof:
                emit(engine.decompress(pending, INFLATE_OUTPUT))
                pending = engine.unconsumed_tail
            if engine.eof:
                break
        emit(engine.flush())
    except zlib.error:
        raise Rejected("corrupt") from None
    return total


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

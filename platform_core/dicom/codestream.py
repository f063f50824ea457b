"""The size a compressed frame's own codestream declares (JPEG, JPEG-LS, JPEG 2000), read from its header.

A JPEG-family decoder allocates what the codestream's SOF or SIZ segment says, not what the DICOM
header's Rows and Columns say: a file can declare 256 x 256 in one and 30000 x 30000 in the other.
Reading the first fragment's header is enough to refuse such a frame before any decoder runs.
"""

from __future__ import annotations

import io
import struct

from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian: the Basic Offset Table, then each fragment
# Start-of-frame markers: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC); SOF55 is JPEG-LS's.
SOF = {bytes([0xFF, m]) for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)} | {b"\xff\xf7"}
# Markers without a length field (TEM, RSTn, SOI, EOI).
STANDALONE = {bytes([0xFF, m]) for m in (0x01, *range(0xD0, 0xDA))}
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "


def declared_pixels(ds: Dataset) -> int | None:
    """Height x width x components of the first frame's codestream; None when not encapsulated,
    not a JPEG family codestream, or its header cannot be read (the decoder then says so)."""
    transfer_syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if transfer_syntax is None or not transfer_syntax.is_encapsulated or "PixelData" not in ds:
        return None
    data = ds.PixelData
    if not isinstance(data, bytes) or data[:4] != ITEM or len(data) < 8:
        return None
    fp = io.BytesIO(data)  # shares the bytes: nothing is copied
    fp.seek(8 + int.from_bytes(data[4:8], "little"))
    try:
        head = next(generate_fragments(fp))[:65536]
    except (StopIteration, ValueError, EOFError):
        return None
    try:
        return _jpeg(head) if head[:2] == b"\xff\xd8" else _j2k(head)
    except (IndexError, struct.error):
        return None


def _jpeg(src: bytes) -> int | None:
    """JPEG / JPEG-LS: walk the marker segments to the frame header."""
    offset = 2
    while offset + 4 <= len(src):
        marker = src[offset : offset + 2]
        if marker[0] != 0xFF:
            return None
        if marker in STANDALONE or marker == b"\xff\xff":  # fill bytes and standalone markers
            offset += 1 if marker == b"\xff\xff" else 2
            continue
        if marker in SOF:
            height, width, components = struct.unpack(">HHB", src[offset + 5 : offset + 10])
            return int(height) * int(width) * max(1, int(components))
        if marker == b"\xff\xda":  # scan data before any frame header
            return None
        offset += 2 + struct.unpack(">H", src[offset + 2 : offset + 4])[0]
    return None


def _j2k(src: bytes) -> int | None:
    """JPEG 2000: the SIZ segment right after SOC (inside a jp2c box for a JP2 file)."""
    offset = 0
    if src.startswith(JP2_SIGNATURE):
        offset = 12
        while offset + 8 <= len(src) and src[offset + 4 : offset + 8] != b"jp2c":
            length = int.from_bytes(src[offset : offset + 4], "big")
            if length < 8:
                return None
            offset += length
        offset += 8
    if src[offset : offset + 4] != b"\xff\x4f\xff\x51":
        return None
    siz: tuple[int, int, int, int] = struct.unpack(">IIII", src[offset + 8 : offset + 24])
    xsiz, ysiz, xosiz, yosiz = siz
    components: int = struct.unpack(">H", src[offset + 40 : offset + 42])[0]
    return max(0, xsiz - xosiz) * max(0, ysiz - yosiz) * max(1, components)

"""Hostile inputs built small: each is a few MB at most here and declares (or inflates to) gigabytes.

Nothing here holds what the input expands to: the deflate bomb is one 16 MiB block of zeros,
compressed once and repeated (a full flush makes each compressed block identical and byte-aligned).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from tests.fixtures_dicom import radiograph, to_bytes

ZERO_BLOCK = 16 * 1024 * 1024
PIXEL_DATA_OW = b"\xe0\x7f\x10\x00OW\x00\x00"  # (7FE0,0010) OW, then a 4-byte length


def deflate_bomb(inflated_bytes: int = 3 * 1024**3, patient: int = 900) -> bytes:
    """A Deflated Explicit VR Little Endian radiograph whose body inflates to about `inflated_bytes`
    (Pixel Data of zeros); about 1/1000 of that on the wire."""
    ds = radiograph(patient=patient, size=64)
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    blocks = max(1, inflated_bytes // ZERO_BLOCK)
    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, ds.file_meta, enforce_standard=True)
    engine = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.write(engine.compress(header.getvalue() + PIXEL_DATA_OW + struct.pack("<I", blocks * ZERO_BLOCK)))
    out.write(engine.flush(zlib.Z_FULL_FLUSH))
    zeros = engine.compress(b"\x00" * ZERO_BLOCK) + engine.flush(zlib.Z_FULL_FLUSH)
    for _ in range(blocks):
        out.write(zeros)
    out.write(engine.flush())
    return out.getvalue()


def rle_bomb(side: int = 20000, patient: int = 901) -> bytes:
    """RLE Lossless, 8-bit, `side` x `side` declared, one tiny segment (a decoder allocates it all)."""
    ds = radiograph(patient=patient, size=64)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.WindowCenter, ds.WindowWidth = 128, 256
    segment = b"\x81\x00" * 512  # each pair: 128 zero bytes
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


def compressed_frame_bomb(side: int = 30000, kind: str = "jpeg", patient: int = 902) -> bytes:
    """A 256 x 256 radiograph by its DICOM header whose one compressed frame declares `side` x `side`
    in its own header (JPEG SOF or JPEG 2000 SIZ): the decoder would allocate the latter."""
    import numpy as np
    from PIL import Image

    ds = radiograph(patient=patient, size=256)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    grey = Image.fromarray(np.random.default_rng(patient).integers(0, 255, (256, 256), dtype=np.uint8))
    buf = io.BytesIO()
    if kind == "jpeg":
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        grey.save(buf, "JPEG")
        frame = bytearray(buf.getvalue())
        struct.pack_into(">HH", frame, frame.index(b"\xff\xc0") + 5, side, side)
    else:
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        grey.save(buf, "JPEG2000", no_jp2=True, irreversible=False)
        frame = bytearray(buf.getvalue())
        struct.pack_into(">II", frame, 8, side, side)  # SIZ: Xsiz, Ysiz
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (8-bit grey) over one tiny IDAT: a bomb to decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def empty_members_zip(path: Path, members: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            zf.writestr(f"m{i}.dcm", b"")
    return path


def many_parts(boundary: str, parts: int, batch: int = 1000) -> Iterator[bytes]:
    """A multipart/form-data body of `parts` empty `files` parts, yielded in blocks of `batch` parts."""
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="p.dcm"\r\n'
        "Content-Type: application/dicom\r\n\r\n\r\n"
    ).encode()
    for start in range(0, parts, batch):
        yield part * min(batch, parts - start)
    yield f"--{boundary}--\r\n".encode()

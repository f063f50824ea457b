"""Generated stand-ins for the recipes' datasets, in each dataset's own layout on disk: small grayscale
PNGs whose findings are bright squares at a place of their own (a signal a model can learn), written by
a few lines of zlib so that the SDK's light install can make them."""

from __future__ import annotations

import csv
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

SIZE = 64
CELL = 12  # a finding's square; 5 x 5 places on a 64 px image


def png(pixels: bytes, width: int = SIZE, height: int = SIZE) -> bytes:
    """An 8-bit grayscale PNG of `pixels` (row-major, width x height bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + pixels[y * width : (y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )


def radiograph(rng: random.Random, findings: Sequence[int]) -> bytes:
    """A noisy image with a bright square at the place of each finding index in `findings`."""
    pixels = bytearray(40 + (b & 31) for b in rng.randbytes(SIZE * SIZE))
    for j in findings:
        place = j % 25  # more findings than places share one
        top, left = 2 + (place // 5) * CELL, 2 + (place % 5) * CELL
        for y in range(top, top + CELL - 2):
            pixels[y * SIZE + left : y * SIZE + left + CELL - 2] = bytes([200]) * (CELL - 2)
    return png(bytes(pixels))


def mura(root: Path, patients: int = 24, seed: int = 0) -> Path:
    """`root/XR_ELBOW/patientNNNNN/study1_positive|negative/image1.png`, one study per patient, half
    of them abnormal (a bright square in the middle); the XR_ELBOW folder."""
    rng = random.Random(seed)
    elbow = root / "XR_ELBOW"
    for p in range(1, patients + 1):
        positive = p % 2 == 1
        study = elbow / f"patient{p:05d}" / f"study1_{'positive' if positive else 'negative'}"
        study.mkdir(parents=True, exist_ok=True)
        (study / "image1.png").write_bytes(radiograph(rng, [12] if positive else []))
    return elbow


def vindr(root: Path, findings: Sequence[str], images: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """VinDr-CXR's per-image findings CSV (`image_id, rad_id, <finding>..., No finding`; one row per
    reading radiologist, so some images are read twice) and `images/<image_id>.png`: (images, CSV)."""
    rng = random.Random(seed)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    for i in range(images):
        image_id = f"{rng.getrandbits(128):032x}"
        # Every finding is present in about a third of the images, and each image has one at least.
        present = {j for j in range(len(findings)) if rng.random() < 0.3} or {i % len(findings)}
        (folder / f"{image_id}.png").write_bytes(radiograph(rng, sorted(present)))
        readings = [sorted(present)] if i % 4 else [sorted(present)[:1], sorted(present)]
        for r, seen in enumerate(readings):
            flags = ["1" if j in seen else "0" for j in range(len(findings))]
            rows.append([image_id, f"R{r + 1}", *flags, "0"])
    path = root / "image_labels_train.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "rad_id", *findings, "No finding"])
        writer.writerows(rows)
    return folder, path


CXR14_HEADER = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]


def cxr14(root: Path, findings: Sequence[str], patients: int = 48, seed: int = 0) -> tuple[Path, Path]:
    """NIH ChestX-ray14's `Data_Entry_2017.csv` (findings joined by '|', or "No Finding") and
    `images/<patient>_<follow-up>.png`, one or two images per patient: (images, CSV). Every fourth
    patient is normal; in the others each finding is present with probability 0.3 (one at least), so
    that a patient-grouped split finds positive patients of every finding for each part."""
    rng = random.Random(seed)
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    for p in range(1, patients + 1):
        present: list[int] = []
        if p % 4:
            present = [j for j in range(len(findings)) if rng.random() < 0.3] or [p % len(findings)]
        for follow_up in range(1 + p % 2):
            name = f"{p:08d}_{follow_up:03d}.png"
            (folder / name).write_bytes(radiograph(rng, present))
            text = "|".join(findings[j] for j in present) or "No Finding"
            rows.append(
                [
                    name,
                    text,
                    str(follow_up),
                    str(p),
                    str(30 + p),
                    "MF"[p % 2],
                    "PA" if p % 3 else "AP",
                    "2500",
                    "2048",
                    "0.143",
                    "0.143",
                ]
            )
    path = root / "Data_Entry_2017.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CXR14_HEADER)
        writer.writerows(rows)
    return folder, path

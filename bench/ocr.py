"""Burned-in text screen benchmark: CPU seconds per image for the worker's OCR screen, by image size.

    python bench/ocr.py [--sizes 512,2048x2500,3000x3000] [--reps 10] [--max-side 1600]

Each image is a radiograph-like float image (smooth anatomy-like structure, quantum noise, a
collimation edge) with a few burned-in annotations ("L", "PORTABLE", a name and an MRN), as the
worker holds it after decoding. Timed per image: what the worker adds to the pixel step, i.e.
downscale to --max-side, 8-bit, Tesseract, normalise and hash the words, compare
(platform_core.dicom.burned_in.finds_phi). CPU is this process's user+system time; the engine is
loaded once before timing (as a worker keeps it). Also reports whether the planted name was found.
Then the same for every CR/DX shipped by pydicom-data (and deid-data, where installed), decoded as
the worker decodes them, with its own header's values: none of them should match. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_core.dicom import burned_in, ocr  # noqa: E402

SECRET = "bench-" + "0" * 32
NAME, MRN = "HARTFIELD^MARGARET", "58302917"


def radiograph(h: int, w: int, seed: int) -> np.ndarray:
    """Low-frequency structure (upsampled noise), Poisson-like noise, a dark collimated border, text."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.normal(0, 1, (12, 12)).astype(np.float32), mode="F")
    smooth = np.asarray(coarse.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    img = 1800 + 500 * smooth + rng.normal(0, 30, (h, w)).astype(np.float32)
    border = max(8, min(h, w) // 25)
    img[:border], img[-border:], img[:, :border], img[:, -border:] = 300, 300, 300, 300
    pil = Image.fromarray(img.clip(0, 4095), mode="F")
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=max(14, min(h, w) // 28))
    step = max(20, min(h, w) // 20)
    x0 = border * 2
    draw.text((x0, border * 2), "L", fill=4095.0, font=font)
    draw.text((w // 2, border * 2), "PORTABLE", fill=4095.0, font=font)
    draw.text((x0, h - border * 2 - 2 * step), "HARTFIELD, MARGARET", fill=4095.0, font=font)
    draw.text((x0, h - border * 2 - step), f"MRN {MRN}", fill=4095.0, font=font)
    return np.asarray(pil, dtype=np.float32)


def measure(shape: tuple[int, int], reps: int, max_side: int, hashes: list[str]) -> dict[str, object]:
    cpu: list[float] = []
    wall: list[float] = []
    found = 0
    for i in range(reps):
        img = radiograph(*shape, seed=i)
        c, t = time.process_time(), time.perf_counter()
        found += bool(burned_in.matches(SECRET, hashes, ocr.read_lines(img, max_side)))
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    cpu.sort()
    return {
        "size": f"{shape[0]}x{shape[1]}",
        "read_at": max(shape) if max(shape) <= max_side else max_side,
        "reps": reps,
        "cpu_s_p50": round(statistics.median(cpu), 4),
        "cpu_s_p95": round(cpu[min(len(cpu) - 1, round(0.95 * (len(cpu) - 1)))], 4),
        "cpu_s_mean": round(statistics.fmean(cpu), 4),
        "wall_s_p50": round(statistics.median(wall), 4),
        "planted_name_found": f"{found}/{reps}",
    }


def real_files() -> list[dict[str, object]]:
    """pydicom-data's CRs and deid-data's DX: CPU seconds each, and whether the screen matched."""
    import warnings

    from pydicom.data import get_testdata_files

    from platform_core.dicom import pixels
    from platform_core.dicom.read import parse

    warnings.simplefilter("ignore")
    paths = [Path(f) for f in get_testdata_files("*") if Path(f).is_file()]
    import deid_data  # the dev extra's real DX files

    paths += sorted(Path(deid_data.__file__).parent.rglob("*.dcm"))
    out: list[dict[str, object]] = []
    for path in paths:
        try:
            ds = parse(path.read_bytes()).dataset
            if str(ds.get("Modality", "")) not in ("CR", "DX"):
                continue
            hashes, img = burned_in.header_hashes(SECRET, ds), pixels.decode(ds)
        except Exception:
            continue
        c = time.process_time()
        matched = burned_in.finds_phi(SECRET, hashes, img)
        cpu = time.process_time() - c
        out.append({"file": path.name, "size": "x".join(map(str, img.shape)), "cpu_s": round(cpu, 3),
                    "matched": matched})  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="512,2048x2500,3000x3000")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--max-side", type=int, default=ocr.MAX_SIDE)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in (s.split("x") * 2)[:2]) for s in args.sizes.split(",")]
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName, ds.PatientID = NAME, MRN
    hashes = burned_in.header_hashes(SECRET, ds)
    ocr.read_lines(np.zeros((32, 32), dtype=np.float32))  # load the engine outside the timing
    results = [measure((h, w), args.reps, args.max_side, hashes) for h, w in shapes]
    real = real_files()
    cpu = sorted(float(r["cpu_s"]) for r in real)  # type: ignore[arg-type]
    summary = {"files": len(real), "matched": sum(bool(r["matched"]) for r in real),
               "cpu_s_p50": round(statistics.median(cpu), 3) if cpu else None,
               "cpu_s_max": cpu[-1] if cpu else None}  # fmt: skip
    report = {"benchmark": "burned_in_screen", "max_side": args.max_side, "synthetic": results,
              "real_cr_dx": {"summary": summary, "files": real}}  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

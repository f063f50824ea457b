"""Ingestion benchmark: the whole pipeline vs dicognito's de-identification alone, on the same files.

    python -m bench.ingest [--n 200] [--size 512] [--batch 16]

Generates N DICOM radiographs (plus the compressed files shipped by pydicom / pydicom-data), runs
upload → de-identify → store → pixel cache through the real API (TestClient, embedded SQLite and
local object store) with the pixel tasks run in-process, then dicognito on the same bytes
(read → anonymize → write). Prints JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMPRESSED = [
    "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_RLE.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]  # fmt: skip


class RssSampler:
    """Peak resident memory of this process while running, sampled from /proc every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self.base = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def corpus(n: int, size: int) -> list[tuple[str, bytes]]:
    import numpy as np
    from pydicom.data import get_testdata_file

    from tests.fixtures_dicom import radiograph, to_bytes

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    files = []
    for i in range(n):
        # Radiograph-like: smooth structures plus quantum noise (pure noise would only time zlib).
        body = 3000 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / (0.08 + 0.01 * (i % 7)))
        ribs = 400 * (np.sin(y * 40 + i) > 0.6)
        pixels = (body + ribs + rng.normal(0, 20, (size, size))).clip(0, 4095)
        files.append((f"r{i}.dcm", to_bytes(radiograph(patient=i % 50 + 1, study=i // 50 + 1, instance=i + 1,
                                                       pixels=pixels))))  # fmt: skip
    for name in COMPRESSED:
        path = get_testdata_file(name)
        if path:
            files.append((name, Path(path).read_bytes()))
    return files


def run_pipeline(files: list[tuple[str, bytes]], batch: int, workdir: Path) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from api.app import build_state, create_app
    from platform_core.auth import service
    from platform_core.config import Settings
    from platform_core.datasets.ingest import process_image
    from platform_core.db.migrate import upgrade

    settings = Settings(data_dir=workdir, deid_secret="bench-" + secrets.token_hex(8), broker_url="memory://")
    upgrade(settings.db_url)
    sent: list[Any] = []
    state = build_state(settings, dispatch=sent.append)
    with state.sessions() as s:
        project = service.create_project(s, "bench")
        _key, raw = service.create_key(s, project)
        s.commit()
    auth = {"Authorization": f"Bearer {raw}"}
    options = {"modalities": ["CR", "DX", "MR", "NM", "OT", "CT"], "min_image_size": 8}
    outcomes: dict[str, int] = {}
    with TestClient(create_app(state=state)) as client, RssSampler() as mem:
        ds_id = client.post("/v1/datasets", json={"name": "bench", "task": "binary", "labels": ["x"],
                                                  "options": options}, headers=auth).json()["id"]  # fmt: skip
        start = time.perf_counter()
        for i in range(0, len(files), batch):
            parts = [("files", (name, data, "application/dicom")) for name, data in files[i : i + batch]]
            r = client.post(f"/v1/datasets/{ds_id}/files", files=parts, headers=auth)
            r.raise_for_status()
            for d in r.json()["data"]:
                outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
            while sent:
                msg = sent.pop(0)
                with state.sessions() as s:
                    process_image(s, state.store, *msg.args)
                    s.commit()
        elapsed = time.perf_counter() - start
        counts = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["counts"]
    state.engine.dispose()
    growth = (mem.peak - mem.base) / 2**20
    return {"seconds": elapsed, "peak_rss_mb": mem.peak / 2**20, "rss_growth_mb": growth,
            "outcomes": outcomes, "accepted": counts["accepted"], "rejected": counts["rejected"]}  # fmt: skip


def run_dicognito(files: list[tuple[str, bytes]]) -> dict[str, Any]:
    from dicognito.anonymizer import Anonymizer
    from pydicom import dcmread

    anonymizer = Anonymizer()
    failures = 0
    with RssSampler() as mem:
        start = time.perf_counter()
        for _name, data in files:
            try:
                ds = dcmread(io.BytesIO(data))
                anonymizer.anonymize(ds)
                ds.save_as(io.BytesIO())
            except Exception:
                failures += 1
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "peak_rss_mb": mem.peak / 2**20, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    files = corpus(args.n, args.size)
    total_mb = sum(len(d) for _, d in files) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = run_pipeline(files, args.batch, Path(tmp))
    dicognito = run_dicognito(files)
    n = len(files)
    result = {
        "files": n,
        "input_mb": round(total_mb, 2),
        "pipeline": {
            "files_per_s": round(n / pipeline["seconds"], 2),
            "mb_per_s": round(total_mb / pipeline["seconds"], 2),
            "seconds": round(pipeline["seconds"], 3),
            "peak_rss_mb": round(pipeline["peak_rss_mb"], 1),
            "rss_growth_mb": round(pipeline["rss_growth_mb"], 1),
            "outcomes": pipeline["outcomes"],
            "accepted": pipeline["accepted"],
            "rejected": pipeline["rejected"],
        },
        "dicognito_deid_only": {
            "files_per_s": round(n / dicognito["seconds"], 2),
            "mb_per_s": round(total_mb / dicognito["seconds"], 2),
            "seconds": round(dicognito["seconds"], 3),
            "peak_rss_mb": round(dicognito["peak_rss_mb"], 1),
            "failures": dicognito["failures"],
        },
        "ratio_pipeline_over_dicognito_files_per_s": round(dicognito["seconds"] / pipeline["seconds"], 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

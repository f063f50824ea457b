"""PACS benchmark: files/s ingested over C-STORE by medtune's listener against Orthanc's own, same files.

    python -m bench.pacs [--n 200] [--size 512] [--associations 1,4]

Writes generated radiographs (a fresh set per association count, so neither side sees a duplicate),
then, for each count k, dcmtk's `storescu` sends the set over k parallel associations to
  - medtune's listener (`medtune dicom` in its own process, embedded mode as `make up` runs it:
    SQLite, local object store, filesystem broker): parse, filter, de-identify, store, record and
    commit each instance before answering it (the pixel cache is the worker's, afterwards);
  - a real Orthanc (Debian's package, its own SQLite index and storage in a temp folder), which
    stores each instance as received.
The clock runs from the first association to the last storescu's exit. Prints JSON. The end-to-end
latency from C-STORE to an SR in the PACS is not measured: results back to the PACS are not built yet.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AE = "BENCH"


def write_set(folder: Path, n: int, size: int, offset: int) -> list[Path]:
    import numpy as np

    from tests.fixtures_dicom import radiograph, to_bytes

    folder.mkdir(parents=True)
    rng = np.random.default_rng(offset)
    y, x = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        body = 3000 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / (0.08 + 0.01 * (i % 7)))
        pixels = (body + rng.normal(0, 20, (size, size))).clip(0, 4095)
        ds = radiograph(patient=offset + i % 50 + 1, study=1, instance=offset + i + 1, pixels=pixels)
        path = folder / f"r{i:06d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def send(paths: list[Path], k: int, called: str, port: int) -> float:
    """Seconds for k parallel storescu associations to send `paths` (split evenly)."""
    groups = [paths[i::k] for i in range(k)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["storescu", "-aet", "BENCHSCU", "-aec", called, "127.0.0.1", str(port), *map(str, g)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for g in groups
    ]
    for p in procs:
        _out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - start


def medtune_listener(work: Path) -> tuple[subprocess.Popen[bytes], int, Any]:
    from platform_core.auth import service
    from platform_core.config import Settings
    from platform_core.datasets import service as datasets
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
    from platform_core.db.migrate import upgrade
    from platform_core.db.session import make_engine, make_sessionmaker
    from tests.services import free_port, wait_for

    secret = "bench-" + secrets.token_hex(16)
    settings = Settings(data_dir=work, deid_secret=secret)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as s:
        project = service.create_project(s, "bench")
        body = DatasetCreate(name="bench", task="binary", labels=["x"], dicom_ae_title=AE,
                             options=DatasetOptions(min_image_size=8))  # fmt: skip
        dataset_id = datasets.create_dataset(s, project.id, body).id
        s.commit()
    port = free_port()
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(work), "MEDTUNE_DEID_SECRET": secret,
           "MEDTUNE_DICOM_ALLOWED_CALLERS": '["BENCHSCU@127.0.0.1"]'}  # fmt: skip
    log = (work / "dicom.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "medtune.cli.main", "dicom", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    echo = ["echoscu", "-aet", "BENCHSCU", "-aec", AE, "127.0.0.1", str(port)]
    wait_for(lambda: subprocess.run(echo, capture_output=True).returncode == 0, 60, 0.3, "the listener")

    def stored() -> int:
        from sqlalchemy import func, select

        from platform_core.datasets.models import Image

        with make_sessionmaker(engine)() as s:
            q = select(func.count()).where(Image.dataset_id == dataset_id, Image.status != "rejected")
            return int(s.scalar(q) or 0)

    return proc, port, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--associations", default="1,4")
    args = parser.parse_args()
    counts = [int(k) for k in args.associations.split(",")]
    from tests.orthanc import running_orthanc

    with tempfile.TemporaryDirectory(prefix="medtune-bench-pacs-") as tmp:
        work = Path(tmp)
        sets = {
            k: write_set(work / f"set{k}", args.n, args.size, 1000 * (j + 1)) for j, k in enumerate(counts)
        }
        mb = sum(p.stat().st_size for ps in sets.values() for p in ps) / 1e6
        proc, port, stored = medtune_listener(work / "medtune")
        results: dict[str, Any] = {"files_per_set": args.n, "size": args.size, "mb_total": round(mb, 1)}
        try:
            with running_orthanc(work / "orthanc", {}) as orthanc:
                for k in counts:
                    before = stored()
                    seconds = send(sets[k], k, AE, port)
                    assert stored() - before == args.n, "medtune did not store every file"
                    orthanc_s = send(sets[k], k, orthanc.ae_title, orthanc.dicom_port)
                    results[f"associations_{k}"] = {
                        "medtune_files_per_s": round(args.n / seconds, 1),
                        "orthanc_files_per_s": round(args.n / orthanc_s, 1),
                        "ratio": round(orthanc_s / seconds, 2),
                    }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    results["target"] = "medtune >= 0.5 x Orthanc"
    results["sr_latency_s"] = None  # results back into the PACS are not built yet
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

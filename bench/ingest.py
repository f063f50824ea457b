"""Ingestion benchmark: the whole pipeline vs dicognito's de-identification alone, on the same files.

    python -m bench.ingest [--n 200] [--scales 1,4] [--size 512] [--batch 16]  (--batch 0: one request)

For each scale s it writes s*N generated DICOM radiographs (plus the compressed files shipped by
pydicom / pydicom-data) to disk, then runs, as `medtune up` does (SQLite, local object store,
filesystem broker), three processes:
  - the API under uvicorn, receiving the files over HTTP (multipart, `batch` files per request, or
    all of them in one with --batch 0, streamed from disk one file at a time by an httpx client in
    this process): each part parsed, filtered, de-identified, stored and recorded as it arrives;
  - a real Celery worker (solo pool) taking the `ingest` queue: decode, window, resize, pixel cache;
and stops the clock when the dataset reports every image done. Then dicognito de-identifies the same
files (read, anonymize, write to memory) in a fresh process. Peak memory is each process's VmHWM;
CPU is user+system seconds spent by the processes during the run. Prints JSON.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DICOM = "application/dicom"
BOUNDARY = "medtune-bench-boundary"
COMPRESSED = [
    "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPGExtended.dcm", "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_RLE.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]  # fmt: skip
# The worker polls the filesystem broker; kombu's default of 1 s would only add idle time.
WORKER = (
    "import sys; from worker.app import celery_app;"
    "celery_app.conf.broker_transport_options['polling_interval'] = 0.05;"
    "celery_app.worker_main(sys.argv[1:])"
)
DICOGNITO = """
import io, json, resource, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.getLogger("pydicom").setLevel(logging.ERROR)
from pathlib import Path
from dicognito.anonymizer import Anonymizer
from pydicom import dcmread
paths = sorted(Path(sys.argv[1]).iterdir())
anonymizer = Anonymizer()
failures = 0
cpu, start = time.process_time(), time.perf_counter()
for path in paths:
    try:
        ds = dcmread(io.BytesIO(path.read_bytes()))
        anonymizer.anonymize(ds)
        ds.save_as(io.BytesIO())
    except Exception:
        failures += 1
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "failures": failures}))
"""


def write_corpus(folder: Path, n: int, size: int) -> int:
    """n generated radiographs + the compressed test files, one at a time (never all in memory)."""
    import numpy as np
    from pydicom.data import get_testdata_file

    from tests.fixtures_dicom import radiograph, to_bytes

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    total = 0
    for i in range(n):
        # Radiograph-like: smooth structures plus quantum noise.
        body = 3000 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / (0.08 + 0.01 * (i % 7)))
        ribs = 400 * (np.sin(y * 40 + i) > 0.6)
        pixels = (body + ribs + rng.normal(0, 20, (size, size))).clip(0, 4095)
        data = to_bytes(radiograph(patient=i % 50 + 1, study=i // 50 + 1, instance=i + 1, pixels=pixels))
        (folder / f"r{i:06d}.dcm").write_bytes(data)
        total += len(data)
    for name in COMPRESSED:
        path = get_testdata_file(name)
        if path:
            data = Path(path).read_bytes()
            (folder / f"z_{name}").write_bytes(data)
            total += len(data)
    return total


def form_body(paths: list[Path]) -> Iterator[bytes]:
    """A multipart/form-data body read from disk one file at a time (sent chunked)."""
    for path in paths:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            f"Content-Type: {DICOM}\r\n\r\n"
        ).encode()
        with path.open("rb") as fh:
            while chunk := fh.read(1024 * 1024):
                yield chunk
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def proc_status(pid: int) -> dict[str, float]:
    """VmHWM (peak resident MiB) and CPU seconds (user + system) of a live process."""
    fields = Path(f"/proc/{pid}/status").read_text().split("\n")
    hwm = next(int(line.split()[1]) for line in fields if line.startswith("VmHWM:")) / 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"peak_rss_mb": hwm, "cpu_s": (int(stat[11]) + int(stat[12])) / ticks}


def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def rates(run: dict[str, Any], files: int, total_mb: float) -> dict[str, float]:
    """Throughput of one timed run (its `seconds` and `cpu_s`) over the corpus."""
    return {
        "files_per_s": round(files / run["seconds"], 1),
        "mb_per_s": round(total_mb / run["seconds"], 1),
        "seconds": round(run["seconds"], 2),
        "cpu_ms_per_file": round(1000 * run["cpu_s"] / files, 2),
    }


def run_pipeline(corpus: Path, work: Path, batch: int) -> dict[str, Any]:
    import httpx

    from platform_core.config import Settings
    from platform_core.db.migrate import upgrade
    from tests.live import make_key
    from tests.services import free_port

    secret = "bench-" + secrets.token_hex(16)
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(work), "MEDTUNE_DEID_SECRET": secret}
    settings = Settings(data_dir=work, deid_secret=env["MEDTUNE_DEID_SECRET"])
    upgrade(settings.db_url)
    _project_id, raw = make_key(settings, "bench")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = (work / "api.log").open("wb"), (work / "worker.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, "worker", "-Q", "ingest", "-P", "solo", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, cwd=ROOT, stdout=logs[1], stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"{base}/v1/datasets")
        auth = {"Authorization": f"Bearer {raw}"}
        options = {"modalities": ["CR", "DX", "MR", "NM", "OT", "CT"], "min_image_size": 8}
        outcomes: dict[str, int] = {}
        paths = sorted(corpus.iterdir())
        with httpx.Client(base_url=base, headers=auth, timeout=600) as client:
            body = {"name": "bench", "task": "binary", "labels": ["x"], "options": options}
            ds_id = client.post("/v1/datasets", json=body).raise_for_status().json()["id"]
            # Warm both processes (imports, first connections) outside the timed run.
            time.sleep(2.0)
            before = {"api": proc_status(api.pid), "worker": proc_status(worker.pid)}
            start = time.perf_counter()
            step = batch or len(paths)
            form = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            for i in range(0, len(paths), step):
                parts = form_body(paths[i : i + step])
                r = client.post(f"/v1/datasets/{ds_id}/files", content=parts, headers=form)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: " + (work / "api.log").read_text()[-3000:])
                for d in r.json()["data"]:
                    outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
            while True:
                got = client.get(f"/v1/datasets/{ds_id}").raise_for_status().json()
                if got["status"] == "ready":
                    break
                if worker.poll() is not None:
                    raise RuntimeError("the worker exited: " + (work / "worker.log").read_text()[-2000:])
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
        after = {"api": proc_status(api.pid), "worker": proc_status(worker.pid)}
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
    cpu = sum(after[k]["cpu_s"] - before[k]["cpu_s"] for k in after)
    return {
        "seconds": elapsed,
        "cpu_s": cpu,
        "api_peak_rss_mb": after["api"]["peak_rss_mb"],
        "worker_peak_rss_mb": after["worker"]["peak_rss_mb"],
        "outcomes": outcomes,
        "accepted": got["counts"]["accepted"],
        "rejected": got["counts"]["rejected"],
    }


def run_dicognito(corpus: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", DICOGNITO, str(corpus)], cwd=ROOT, capture_output=True,
                         check=True, text=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def one_scale(n: int, size: int, batch: int, tmp: Path) -> dict[str, Any]:
    corpus = tmp / f"corpus-{n}"
    total_mb = write_corpus(corpus, n, size) / 2**20
    files = len(list(corpus.iterdir()))
    pipeline = run_pipeline(corpus, tmp / f"data-{n}", batch)
    dicognito = run_dicognito(corpus)
    return {
        "files": files,
        "input_mb": round(total_mb, 1),
        "pipeline": {
            **rates(pipeline, files, total_mb),
            "api_peak_rss_mb": round(pipeline["api_peak_rss_mb"], 1),
            "worker_peak_rss_mb": round(pipeline["worker_peak_rss_mb"], 1),
            "outcomes": pipeline["outcomes"],
            "accepted": pipeline["accepted"],
            "rejected": pipeline["rejected"],
        },
        "dicognito_deid_only": {
            **rates(dicognito, files, total_mb),
            "peak_rss_mb": round(dicognito["peak_rss_mb"], 1),
            "failures": dicognito["failures"],
        },
        "ratio_pipeline_over_dicognito_files_per_s": round(dicognito["seconds"] / pipeline["seconds"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--scales", default="1,4", help="upload sizes as multiples of N")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16, help="files per request; 0: all in one request")
    args = parser.parse_args()
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    runs = []
    with tempfile.TemporaryDirectory(prefix="medtune-bench-") as tmp:
        for scale in (int(s) for s in args.scales.split(",")):
            runs.append(one_scale(args.n * scale, args.size, args.batch, Path(tmp)))
    peaks = [r["pipeline"]["api_peak_rss_mb"] + r["pipeline"]["worker_peak_rss_mb"] for r in runs]
    print(json.dumps({
        "cpu_cores": os.cpu_count(),
        "image_size": args.size,
        "files_per_request": args.batch or "all",
        "runs": runs,
        "peak_rss_growth_largest_over_smallest_mb": round(peaks[-1] - peaks[0], 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

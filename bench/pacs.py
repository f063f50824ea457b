"""PACS benchmark: files/s ingested over C-STORE by medtune's listener against Orthanc's own, same files.

    python -m bench.pacs [--n 200] [--size 512] [--associations 1,4]

Writes generated radiographs (a fresh set per association count, so neither side sees a duplicate),
then, for each count k, dcmtk's `storescu` sends the set over k parallel associations to
  - medtune's listener (`medtune dicom` in its own process, embedded mode as `make up` runs it:
    SQLite, local object store, filesystem broker): parse, filter, de-identify, store, record and
    commit each instance before answering it (the pixel cache is the worker's, afterwards);
  - a real Orthanc (Debian's package, its own SQLite index and storage in a temp folder), which
    stores each instance as received.
The clock runs from the first association to the last storescu's exit.

Then the end-to-end latency of inference from the PACS: a tiny model (test_resnet, LoRA) is trained
in this process on 16 labelled radiographs and bound to an inference AE title; for each of --reps CRs,
Orthanc C-STOREs it there (REST /modalities/{id}/store) and the clock stops when the SR is in Orthanc
(polled every 20 ms). The first is cold: the listener loads the model then. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AE = "BENCH"
MODEL_AE = "BENCHAI"
TINY = {"epochs": 1, "batch_size": 4, "image_size": 64, "augmentation": "none", "warmup_epochs": 0}


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

    settings = Settings(data_dir=work)
    settings.resolved_secret()  # the secret: generated once into the data dir, as `make up` does
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as s:
        project = service.create_project(s, "bench")
        body = DatasetCreate(name="bench", task="binary", labels=["x"], dicom_ae_title=AE,
                             options=DatasetOptions(min_image_size=8))  # fmt: skip
        dataset_id = datasets.create_dataset(s, project.id, body).id
        s.commit()
    port = free_port()
    env = {**os.environ, "MEDTUNE_DATA_DIR": str(work),
           "MEDTUNE_DICOM_ALLOWED_CALLERS": '["BENCHSCU@127.0.0.1", "ORTHANC@127.0.0.1"]'}  # fmt: skip
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


def train_and_bind(work: Path, orthanc_port: int) -> None:
    """A tiny model version in the listener's database, bound to MODEL_AE; Orthanc as the SR's node."""
    import io

    from platform_core.auth.models import Project
    from platform_core.config import Settings
    from platform_core.datasets import service as datasets
    from platform_core.datasets.ingest import process_image
    from platform_core.datasets.labels import import_labels
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.jobs import service as jobs
    from platform_core.jobs import validation
    from platform_core.jobs.run import run_job
    from platform_core.jobs.schemas import JobCreate
    from platform_core.pacs import service as pacs
    from platform_core.pacs.schemas import PacsNodeCreate
    from platform_core.registry import service as registry
    from platform_core.registry.schemas import ModelCreate
    from platform_core.storage import open_store
    from tests.fixtures_dicom import radiograph, to_bytes, uid

    settings = Settings(data_dir=work)
    secret, store = settings.resolved_secret(), open_store(settings.object_store_url or "", settings)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    files = [to_bytes(radiograph(patient=9000 + i, size=64, seed=i)) for i in range(16)]
    labels = "StudyInstanceUID,finding\n" + "".join(f"{uid(9000 + i, 1)},{i % 2}\n" for i in range(16))
    with sessions() as s:
        project = s.query(Project).one()
        body = DatasetCreate(name="train", task="binary", labels=["finding"],
                             options=DatasetOptions(min_image_size=32, cache_size=64))  # fmt: skip
        dataset = datasets.create_dataset(s, project.id, body)
        uploads = [datasets.Upload(f"{i}.dcm", io.BytesIO(b)) for i, b in enumerate(files)]
        outcomes = datasets.ingest_uploads(s, store, settings, secret, dataset, uploads)
        import_labels(s, secret, dataset, labels.encode())
        s.commit()
        for o in outcomes:
            assert o.image_id and process_image(s, store, o.image_id, secret=secret) == "accepted"
        job = jobs.create_job(s, project.id, JobCreate.model_validate({
            "dataset_id": dataset.id, "split": {"seed": 1}, "base_model": "test_resnet", "weights": "random",
            "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}}, "hyperparameters": TINY}))  # fmt: skip
        s.commit()
        validation.validate(s, job.id, store)
        s.commit()
        assert run_job(sessions, store, job.id) == "succeeded"
        s.expire_all()  # the runner committed the job's end in its own sessions
        version = registry.promote(s, store, project.id, ModelCreate(job_id=job.id, name="bench"),
                                   settings.mlflow_tracking_uri)  # fmt: skip
        s.commit()
        pacs.bind_inference_ae(s, project.id, "bench", version.number, MODEL_AE)
        node = PacsNodeCreate(
            name="orthanc", kind="dimse", host="127.0.0.1", port=orthanc_port, ae_title="ORTHANC"
        )
        pacs.create_node(s, secret, project.id, node)
        s.commit()


def sr_latency(orthanc: Any, listener_port: int, reps: int, size: int) -> list[float]:
    """Seconds from Orthanc's C-STORE of one CR to the model's AE until its SR is in Orthanc."""
    from tests.fixtures_dicom import radiograph, to_bytes

    orthanc.rest("PUT", "/modalities/ai", json={"AET": MODEL_AE, "Host": "127.0.0.1", "Port": listener_port})
    out = []
    for i in range(reps):
        ds = radiograph(patient=9500 + i, size=size, modality="CR", seed=i)
        study = orthanc.upload(to_bytes(ds))["ParentStudy"]
        query = {
            "Level": "Instance",
            "Query": {"StudyInstanceUID": str(ds.StudyInstanceUID), "Modality": "SR"},
        }
        start = time.perf_counter()
        orthanc.rest("POST", "/modalities/ai/store", json={"Resources": [study], "Synchronous": False})
        while not orthanc.rest("POST", "/tools/find", json=query):
            if time.perf_counter() - start > 300:
                raise TimeoutError("no SR in Orthanc after 300 s")
            time.sleep(0.02)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--associations", default="1,4")
    parser.add_argument("--reps", type=int, default=5, help="CRs sent to the inference AE")
    args = parser.parse_args()
    counts = [int(k) for k in args.associations.split(",")]
    from tests.orthanc import running_orthanc

    with tempfile.TemporaryDirectory(prefix="medtune-bench-pacs-") as tmp:
        work = Path(tmp)
        # This process trains and promotes the model: its settings (MLflow, objects) are the listener's.
        os.environ["MEDTUNE_DATA_DIR"] = str(work / "medtune")
        os.environ.pop("MEDTUNE_DEID_SECRET", None)
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
                train_and_bind(work / "medtune", orthanc.dicom_port)
                seconds = sr_latency(orthanc, port, args.reps, args.size)
                warm = sorted(seconds[1:]) or seconds
                results["sr_latency_s"] = {
                    "cold": round(seconds[0], 3), "warm_p50": round(warm[len(warm) // 2], 3),
                    "warm_max": round(warm[-1], 3), "model": "test_resnet LoRA", "cr_size": args.size,
                }  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    results["target"] = "medtune >= 0.5 x Orthanc"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

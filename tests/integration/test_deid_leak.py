"""The promise, checked end to end: CRs with a planted value in every place identifiers hide go in
through the real API (live server, real worker process on the filesystem broker), the pixel tasks run,
a one-epoch tiny-model job trains on them, and then not one planted value is found in the object
store, a dump of the database (SQLite and PostgreSQL), the logs, MLflow's store or the broker's folder.
"""

from __future__ import annotations

import logging
import secrets
import signal
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import medtune
from platform_core.config import Settings
from tests.fixtures_dicom import to_bytes
from tests.live import make_key
from tests.phi_corpus import Planted, corpus, leaks
from tests.services import WorkerProcess, create_pg_database, drop_pg_database, free_port, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

FILES = 10
JOB = {
    "base_model": "test_resnet",
    "weights": "random",
    "method": {"type": "lora", "lora": {"r": 4, "alpha": 8}},
    "hyperparameters": {"epochs": 1, "batch_size": 4, "image_size": 32, "augmentation": "none",
                        "warmup_epochs": 0, "early_stopping_patience": None},
}  # fmt: skip


@dataclass
class Platform:
    url: str
    auth: dict[str, str]
    settings: Settings
    worker: WorkerProcess
    server: Any
    thread: threading.Thread
    log: logging.Handler

    def stop(self) -> None:
        """Server, worker and log handler down, so every byte they write is on disk before the scan."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.worker.stop(signal.SIGQUIT)
        logging.getLogger().removeHandler(self.log)
        self.log.close()


@contextmanager
def platform(data_dir: Path, database: str) -> Iterator[Platform]:
    """The embedded platform on SQLite, or on a PostgreSQL database of its own; the API's log (INFO, as
    deployed) to data_dir/api.log, the worker's to data_dir/worker.log."""
    import uvicorn

    from api.app import create_app
    from platform_core.db.migrate import upgrade

    data_dir.mkdir(parents=True)
    db_url = create_pg_database("medtune_leak") if database == "postgresql" else None
    env = {"MEDTUNE_DATA_DIR": str(data_dir), "MEDTUNE_DEID_SECRET": secrets.token_hex(32),
           "MEDTUNE_ENV": "embedded", **({"MEDTUNE_DATABASE_URL": db_url} if db_url else {})}  # fmt: skip
    settings = Settings(data_dir=data_dir, database_url=db_url, deid_secret=env["MEDTUNE_DEID_SECRET"])
    handler = logging.FileHandler(data_dir / "api.log")
    root = logging.getLogger()
    level = root.level
    try:
        upgrade(settings.db_url)
        _project, key = make_key(settings, "leak")
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        worker = WorkerProcess(env, data_dir / "worker.log").start()
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="info")
        )
        thread = threading.Thread(target=server.run, name="leak-api", daemon=True)
        thread.start()
        auth = {"Authorization": f"Bearer {key}"}
        live = Platform(f"http://127.0.0.1:{port}", auth, settings, worker, server, thread, handler)
        try:
            wait_for(lambda: server.started, 60, 0.05, "the API server")
            yield live
        finally:
            live.stop()
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        if db_url:
            drop_pg_database(db_url)


def ingest_and_train(live: Platform, planted: Planted, files: list[bytes]) -> dict[str, Any]:
    """Upload (file names planted too), labels keyed by the planted accession numbers, pixel tasks,
    a split and a one-epoch job; returns the de-identification report."""
    with httpx.Client(base_url=live.url, headers=live.auth, timeout=120) as api:
        body = {"name": "leak", "task": "binary", "labels": ["finding"],
                "options": {"min_image_size": 32, "cache_size": 32}}  # fmt: skip
        ds_id = api.post("/v1/datasets", json=body).raise_for_status().json()["id"]
        parts = [("files", (planted.token(f"filename{i}") + ".dcm", data, "application/dicom"))
                 for i, data in enumerate(files)]  # fmt: skip
        r = api.post(f"/v1/datasets/{ds_id}/files", files=parts)
        assert r.status_code == 202 and {d["outcome"] for d in r.json()["data"]} == {"queued"}, r.text
        accessions = [planted.values[f"cr{n}.AccessionNumber"] for n in range(1, len(files) + 1)]
        csv = "AccessionNumber,finding\n" + "".join(f"{a},{n % 2}\n" for n, a in enumerate(accessions, 1))
        r = api.post(f"/v1/datasets/{ds_id}/labels", files={"file": ("labels.csv", csv.encode(), "text/csv")})
        assert r.json()["matched"] == len(files), r.text

        def settled() -> dict[str, Any] | None:
            counts: dict[str, Any] = api.get(f"/v1/datasets/{ds_id}").json()["counts"]
            return counts if counts["pending"] == 0 else None

        counts = wait_for(settled, 120, 0.25, f"the pixel tasks\n{live.worker.output()[-3000:]}")
        assert counts["accepted"] == len(files), counts
        split = api.post(f"/v1/datasets/{ds_id}/splits", json={"seed": 1}).raise_for_status().json()
        job = api.post("/v1/fine-tuning/jobs", json={"dataset_id": ds_id, "split_id": split["id"], **JOB})
        assert job.status_code == 201, job.text
        done = wait_for(lambda: (j := api.get(f"/v1/fine-tuning/jobs/{job.json()['id']}").json())["status"]
                        in ("succeeded", "failed", "cancelled") and j, 240, 0.5,
                        f"the job\n{live.worker.output()[-3000:]}")  # fmt: skip
        assert done["status"] == "succeeded", (done, live.worker.output()[-3000:])
    # The report through the SDK, as a compliance officer reads it.
    key = live.auth["Authorization"].removeprefix("Bearer ")
    with medtune.Client(live.url, api_key=key) as client:
        report: dict[str, Any] = client.datasets.deid_report(ds_id).model_dump()
    return report


def database_dump(settings: Settings) -> bytes:
    url = settings.db_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return "\n".join(conn.iterdump()).encode()
    libpq = "postgresql://" + url.split("://", 1)[1]
    return subprocess.run(
        ["pg_dump", "--no-owner", libpq], capture_output=True, check=True, timeout=60
    ).stdout


def scan(data_dir: Path, dump: bytes, planted: Planted) -> dict[str, list[str]]:
    """Every file the platform wrote (objects, caches, SQLite files, broker messages, MLflow's store and
    artifacts, logs) and the database dump: path -> the planted values found in it."""
    found = {"database dump": leaks(dump, planted)}
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        found[str(path.relative_to(data_dir))] = leaks(path.read_bytes(), planted)
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_no_planted_value_is_stored_anywhere(tmp_path: Path, database: str) -> None:
    datasets, planted = corpus(FILES)
    files = [to_bytes(ds) for ds in datasets]
    assert all(len(leaks(f, planted)) > 300 for f in files)  # planted, and the scan sees them
    data_dir = tmp_path / "data"
    with platform(data_dir, database) as live:
        report = ingest_and_train(live, planted, files)
        live.stop()
        dump = database_dump(live.settings)
        written = sorted(p.relative_to(data_dir).parts[0] for p in data_dir.iterdir())
        # Each place the promise covers was written to, so finding nothing there means something.
        assert {"api.log", "worker.log", "broker", "mlflow.sqlite"} <= set(written), written
        assert b"dataset_deid_counts" in dump and len(dump) > 10_000
        assert scan(data_dir, dump, planted) == {}
    assert report["files"] == FILES and all(report["actions"][a] > 0 for a in report["actions"])
    assert [m["code"] for m in report["methods"]] == ["113100", "113107"] and report["kept"] == []
    assert leaks(repr(report).encode(), planted) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_report_counts_add_up_under_concurrent_uploads(tmp_path: Path, database: str) -> None:
    """Four uploads at once into one dataset, each its own transaction: no count is lost, and the
    sums are exactly those of the files' own de-identification."""
    from platform_core.auth import service as auth
    from platform_core.datasets import deid_report, service
    from platform_core.datasets.ingest import Ingestor
    from platform_core.datasets.schemas import DatasetCreate, DatasetOptions
    from platform_core.db.migrate import upgrade
    from platform_core.db.session import make_engine, make_sessionmaker
    from platform_core.dicom.deid import Deidentifier, Options
    from platform_core.dicom.read import parse
    from platform_core.storage import open_store

    secret = secrets.token_hex(32)
    datasets, _planted = corpus(8)
    for ds in datasets:
        ds.Manufacturer = "ACME"  # kept by the device identity option, and reported so
    files = [to_bytes(ds) for ds in datasets]
    db_url = create_pg_database("medtune_deidcount") if database == "postgresql" else None
    url = db_url or f"sqlite:///{tmp_path / 'medtune.sqlite'}"
    engine = make_engine(url)
    try:
        upgrade(url)
        sessions = make_sessionmaker(engine)
        with sessions() as s:
            project = auth.create_project(s, "counts")
            options = DatasetOptions(
                min_image_size=32, cache_size=32, burned_in_text="off", retain_device_identity=True
            )
            body = DatasetCreate(name="c", task="binary", labels=["x"], options=options)
            dataset_id = service.create_dataset(s, project.id, body).id
            s.commit()
        store = open_store(f"file://{tmp_path / 'objects'}")

        def upload(chunk: list[bytes]) -> None:
            with sessions() as s:
                dataset = service.get_dataset(s, project.id, dataset_id)
                with Ingestor(s, store, secret, dataset) as ingestor:
                    assert {ingestor.dicom(data).outcome for data in chunk} == {"queued"}
                    ingestor.finish()
                s.commit()

        threads = [threading.Thread(target=upload, args=(files[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        expected: Counter[str] = Counter()
        for data in files:
            expected.update(
                Deidentifier(secret, Options(retain_device_identity=True))(parse(data).dataset).counts
            )
        with sessions() as s:
            dataset = service.get_dataset(s, project.id, dataset_id)
            report = deid_report.build(s, dataset)
        assert report.files == 8 and report.actions == {a: expected[a] for a in report.actions}
        assert [m.code for m in report.methods] == ["113100", "113107", "113109"]
        assert [(k.attribute, k.option, k.files) for k in report.kept] == [
            ("Manufacturer", "retain_device_identity", 8)
        ]
    finally:
        engine.dispose()
        if db_url:
            drop_pg_database(db_url)

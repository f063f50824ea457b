"""A live platform for SDK, CLI and browser tests: uvicorn serving create_app() on a free port (in a
thread of the test process), a PostgreSQL database of its own, objects in a temp folder, and a real
Celery worker process on the embedded (filesystem) broker."""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from platform_core.config import Settings
from tests.services import WorkerProcess, create_pg_database, drop_pg_database, free_port, wait_for


@dataclass
class Live:
    url: str
    key: str
    project_id: str
    settings: Settings
    worker: WorkerProcess | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def worker_log(self) -> str:
        return self.worker.output()[-4000:] if self.worker else ""


def make_key(settings: Settings, project: str) -> tuple[str, str]:
    from platform_core.auth import service
    from platform_core.db.session import make_engine, make_sessionmaker

    engine = make_engine(settings.db_url)
    with make_sessionmaker(engine)() as s:
        p = service.create_project(s, project)
        _key, raw = service.create_key(s, p)
        s.commit()
        project_id = p.id
    engine.dispose()
    return project_id, raw


@contextmanager
def live_platform(
    data_dir: Path, *, worker: bool = True, queues: str = "ingest,train,infer", sqlite: bool = False
) -> Iterator[Live]:
    """sqlite=True: the embedded database (a SQLite file in data_dir) instead of a PostgreSQL one."""
    import uvicorn

    from api.app import create_app
    from platform_core.db.migrate import upgrade

    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{data_dir / 'medtune.db'}" if sqlite else create_pg_database("medtune_live")
    env = {
        "MEDTUNE_DATA_DIR": str(data_dir),
        "MEDTUNE_DATABASE_URL": db_url,
        "MEDTUNE_DEID_SECRET": "live-" + secrets.token_hex(16),
        "MEDTUNE_ENV": "embedded",
    }
    proc: WorkerProcess | None = None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    try:
        upgrade(db_url)
        settings = Settings(data_dir=data_dir, database_url=db_url, deid_secret=env["MEDTUNE_DEID_SECRET"])
        project_id, key = make_key(settings, f"live-{secrets.token_hex(3)}")
        if worker:
            proc = WorkerProcess(env, data_dir / "worker.log", queues=queues).start()
        port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="live-api", daemon=True)
        thread.start()
        wait_for(lambda: server is not None and server.started, 60, 0.05, "the API server")
        yield Live(f"http://127.0.0.1:{port}", key, project_id, settings, proc)
    finally:
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=30)
        if proc is not None:
            proc.stop(signal.SIGQUIT)  # cold shutdown: a warm one waits out a running task, for nothing
        if not sqlite:
            drop_pg_database(db_url)


def sample_files(folder: Path, patients: int = 6, size: int = 64) -> tuple[list[Path], Path]:
    """Small radiographs for `patients` patients (one study each) in `folder`, plus a labels CSV keyed by
    AccessionNumber with a `finding` label that alternates: (DICOM paths, labels CSV path)."""
    from tests.fixtures_dicom import PLANTED, radiograph, to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rows = ["AccessionNumber,finding"]
    for p in range(1, patients + 1):
        path = folder / f"patient{p}.dcm"
        path.write_bytes(to_bytes(radiograph(patient=p, study=1, instance=1, size=size, seed=p)))
        paths.append(path)
        rows.append(f"{PLANTED['accession']}{p}1,{p % 2}")
    labels = folder.with_name(f"{folder.name}-labels.csv")
    labels.write_text("\n".join(rows) + "\n")
    return paths, labels

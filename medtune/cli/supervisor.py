"""`medtune up`: migrate, bootstrap, start API, workers (ingest, train, infer), the DICOM listener and
MLflow UI, and stop them all together."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A child in its own session survives its parent; PDEATHSIG makes a killed `up` take it along.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def bootstrap(settings: Any) -> str | None:
    """Migrate; on the first start create project `default` and return a fresh admin key."""
    from platform_core.auth import service
    from platform_core.auth.models import Project
    from platform_core.db.migrate import upgrade
    from platform_core.db.session import make_engine, make_sessionmaker, unit_of_work

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_secret()
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            if session.query(Project).count():
                return None
            project = service.create_project(session, "default")
            _key, raw = service.create_key(session, project, ["admin"], name="admin (medtune up)")
            return raw
    finally:
        engine.dispose()


# One worker process per class of work, so a running job never delays ingestion or predictions. The
# ingest worker also runs the beat (stale jobs, held-back jobs): one beat per deployment.
WORK_CLASSES = {"worker-ingest": "ingest", "worker-train": "train", "worker-infer": "infer"}


def embedded_workers(beat_schedule: Path) -> dict[str, list[str]]:
    """The `celery worker` command lines `medtune up` runs, by process name."""
    from medtune.cli.server import worker_argv

    return {
        name: [sys.executable, *worker_argv(queue, 1, beat_schedule if queue == "ingest" else None, name)]
        for name, queue in WORK_CLASSES.items()
    }


def run_embedded(
    settings: Any, host: str, port: int, mlflow_port: int, console: Console, dicom_port: int = 11112
) -> int:
    raw_key = bootstrap(settings)
    mlflow_url = f"http://{host}:{mlflow_port}"
    env = {
        **os.environ,
        "MEDTUNE_DATA_DIR": str(settings.data_dir),
        "MEDTUNE_MLFLOW_UI_URL": os.environ.get("MEDTUNE_MLFLOW_UI_URL", mlflow_url),
    }
    artifacts = settings.data_dir / "mlflow-artifacts"
    beat_schedule = settings.data_dir / "celerybeat-schedule"
    commands = {
        "api": [sys.executable, "-m", "uvicorn", "api.asgi:app", "--host", host, "--port", str(port)],
        **embedded_workers(beat_schedule),
        "dicom": [
            sys.executable, "-m", "medtune.cli.main", "dicom", "--host", host, "--port", str(dicom_port),
        ],
        "mlflow": [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", settings.mlflow_tracking_uri,
            "--artifacts-destination", str(artifacts),
            "--host", host, "--port", str(mlflow_port), "--workers", "1",
        ],
    }  # fmt: skip
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Whatever happens to this process, the reaper sees its stdin close and stops every group.
    reaper = subprocess.Popen(
        [sys.executable, "-m", "medtune.cli.reaper"], stdin=subprocess.PIPE, start_new_session=True
    )
    assert reaper.stdin is not None
    try:
        for name, argv in commands.items():
            with (logs / f"{name}.log").open("ab") as log:
                children[name] = subprocess.Popen(
                    argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=_die_with_parent,
                )  # fmt: skip
            reaper.stdin.write(f"{children[name].pid}\n".encode())
            reaper.stdin.flush()
        console.print(f"medtune API      http://{host}:{port}  (console at /, OpenAPI at /docs)")
        console.print(f"MLflow UI        {mlflow_url}")
        console.print(f"DICOM listener   {settings.dicom_ae_title}@{host}:{dicom_port}  (C-ECHO, C-STORE)")
        for name, queue in WORK_CLASSES.items():
            console.print(f"{name:<16} pid {children[name].pid}, queue {queue}")
        console.print(f"data dir         {settings.data_dir}  (logs in {logs})")
        if raw_key:
            console.print(f"Admin API key: {raw_key}", soft_wrap=True, highlight=False)
        sys.stdout.flush()
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    console.print(
                        f"[red]{name} exited with {child.returncode}; see {logs / (name + '.log')}[/]"
                    )
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop_all(children)
        reaper.stdin.close()
        reaper.wait(timeout=30)


def _stop_all(children: dict[str, subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    for child in children.values():
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    # Whatever a child left in its group (pool workers, gunicorn workers) goes too.
    for child in children.values():
        _signal_group(child, signal.SIGKILL)
        if child.poll() is None:
            child.wait(timeout=5)


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

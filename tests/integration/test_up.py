"""`medtune up` in a temp dir on free ports: URLs and admin key printed, /readyz 200, ping round-trips,
a second start reuses the data dir, and stopping it (SIGTERM or SIGKILL) leaves no orphan processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from platform_core.config import Settings
from tests.services import ROOT, free_port, wait_for
from worker.app import make_celery

pytestmark = pytest.mark.slow


class Up:
    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port, self.mlflow_port, self.dicom_port = free_port(), free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDTUNE_")} | (extra_env or {})
        env.setdefault("MEDTUNE_DICOM_ALLOWED_CALLERS", '["ECHOSCU@127.0.0.1"]')
        argv = [sys.executable, "-m", "medtune.cli.main", "up", "--data-dir", str(data_dir),
                "--port", str(self.port), "--mlflow-port", str(self.mlflow_port),
                "--dicom-port", str(self.dicom_port)]  # fmt: skip
        self.out = data_dir.parent / f"up-{self.port}.out"
        with self.out.open("wb") as fh:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_api(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"medtune up exited early:\n{self.text()}")
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200

        wait_for(ready, 90, 0.5, "medtune up /readyz")

    def wait_ready(self) -> None:
        self.wait_api()
        mlflow_ui = f"http://127.0.0.1:{self.mlflow_port}/"
        wait_for(lambda: httpx.get(mlflow_ui, timeout=2).status_code == 200, 90, 0.5, "the MLflow UI")

    def family(self) -> list[psutil.Process]:
        return [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]


def _gone(procs: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    _gone_, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_up_runs_the_platform_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data)
    try:
        up.wait_ready()
        out = up.text()
        assert f"http://127.0.0.1:{up.port}" in out and f"http://127.0.0.1:{up.mlflow_port}" in out
        key_lines = [line for line in out.splitlines() if line.startswith("Admin API key: mt_")]
        assert len(key_lines) == 1
        key = key_lines[0].split(": ", 1)[1].strip()
        me = httpx.get(f"http://127.0.0.1:{up.port}/v1/project", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["name"] == "default"

        celery = make_celery(Settings(data_dir=data))
        assert celery.send_task("system.ping", queue="ingest").get(timeout=60)["pong"] is True

        worker_log = (data / "logs" / "worker-ingest.log").read_text()
        assert "beat: Starting" in worker_log  # the embedded beat that requeues stale jobs
        assert all(f"worker-{q}" in out for q in ("ingest", "train", "infer"))  # a worker per class
        echo = ["echoscu", "-aet", "ECHOSCU", "-aec", "MEDTUNE", "127.0.0.1", str(up.dicom_port)]
        wait_for(lambda: subprocess.run(echo, capture_output=True).returncode == 0, 30, 0.5, "DICOM C-ECHO")
        family = up.family()
        assert len(family) >= 6  # up, api, three workers (+ their pools), mlflow
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=60) == 0
        assert _gone(family) == []
    finally:
        if up.proc.poll() is None:
            up.proc.kill()

    again = Up(data)
    try:
        again.wait_ready()
        assert "Admin API key" not in again.text()  # the first start's project and key are reused
        assert (data / "deid-secret").exists()
        family = again.family()
        again.proc.send_signal(signal.SIGKILL)  # no chance to clean up: children must still go
        again.proc.wait(timeout=10)
        assert _gone(family[1:], timeout=60) == []
    finally:
        for p in psutil.process_iter():
            try:
                if str(data) in " ".join(p.cmdline()):
                    p.kill()
            except psutil.Error:
                pass

"""Work classes apart, on `medtune up` (SQLite, the filesystem broker, a worker per class of work): an
ingest finishes while a training job runs; and the per-project limit on running jobs keeps a second job
`queued` while the first runs (a second train worker idles beside it), then starts it when the first
ends. Tiny DICOM radiographs and test_resnet."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_up import Up
from tests.labelled import (
    call,
    create_job,
    get_job,
    labelled_split,
    new_dataset,
    upload,
    wait_job,
    wait_ready,
)
from tests.live import sample_files
from tests.services import WorkerProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

LONG = {"epochs": 500, "early_stopping_patience": None}  # ended by a cancel, never by its epochs


@dataclass
class Embedded:
    up: Up
    client: httpx.Client
    headers: dict[str, str]
    dataset_id: str
    split_id: str
    tmp: Path

    def log(self) -> str:
        logs = self.up.data_dir / "logs"
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in logs.glob("worker-*")
        )


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    tmp = tmp_path_factory.mktemp("classes")
    data = tmp / "data"
    env = {"MEDTUNE_MAX_RUNNING_JOBS_PER_PROJECT": "1", "HF_HUB_OFFLINE": "1"}
    up = Up(data, env)
    # A second train worker on the same data dir: the limit, not a busy worker, is what holds a job.
    trainer = WorkerProcess(
        {"MEDTUNE_DATA_DIR": str(data), **env}, tmp / "second-trainer.log", queues="train"
    )
    try:
        up.wait_api()
        key = next(ln for ln in up.text().splitlines() if ln.startswith("Admin API key: ")).split(": ", 1)[1]
        trainer.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{up.port}", timeout=30) as client:
            headers = {"Authorization": f"Bearer {key.strip()}"}
            ds, split = labelled_split(client, headers, tmp / "cxr")
            yield Embedded(up, client, headers, ds, split, tmp)
    finally:
        trainer.stop(signal.SIGQUIT)  # cold: a warm shutdown waits out a running task, for nothing
        up.proc.send_signal(signal.SIGTERM)
        try:
            up.proc.wait(timeout=60)
        except Exception:
            up.proc.kill()


def _running(e: Embedded, job_id: str) -> None:
    """Once the job runs and has made progress (so it is past its start, mid-epoch or later)."""
    wait_job(e.client, e.headers, job_id, ("running",), timeout=120, log=e.log)
    wait_for(lambda: get_job(e.client, e.headers, job_id)["progress"], 60, 0.25, what=f"{job_id} progress")


def _cancel(e: Embedded, job_id: str) -> dict[str, Any]:
    if get_job(e.client, e.headers, job_id)["status"] not in ("succeeded", "failed", "cancelled"):
        e.client.post(f"/v1/fine-tuning/jobs/{job_id}/cancel", headers=e.headers)
    return wait_job(e.client, e.headers, job_id, timeout=60, log=e.log)


def _messages(e: Embedded, job_id: str) -> list[str]:
    events = call(e.client, "GET", f"/v1/fine-tuning/jobs/{job_id}/events?limit=200", e.headers)["data"]
    return [str(ev["message"]) for ev in reversed(events)]


def test_an_ingest_finishes_while_a_job_runs(embedded: Embedded) -> None:
    e = embedded
    job = create_job(e.client, e.headers, e.dataset_id, e.split_id, **LONG)
    try:
        _running(e, job["id"])
        paths, _labels = sample_files(e.tmp / "more", patients=4)
        started = time.monotonic()
        ds = new_dataset(e.client, e.headers, "while-training")
        upload(e.client, e.headers, ds, paths)
        assert wait_ready(e.client, e.headers, ds, timeout=60)["counts"]["accepted"] == 4
        took = time.monotonic() - started
        during = get_job(e.client, e.headers, job["id"])
        assert during["status"] == "running", during
        assert took < 30, f"ingesting 4 images took {took:.1f}s beside a running job"
    finally:
        assert _cancel(e, job["id"])["status"] == "cancelled"


def test_a_second_job_waits_for_the_projects_running_slot(embedded: Embedded) -> None:
    e = embedded
    first = create_job(e.client, e.headers, e.dataset_id, e.split_id, **LONG)
    second: dict[str, Any] = {}
    try:
        _running(e, first["id"])
        second = create_job(e.client, e.headers, e.dataset_id, e.split_id, epochs=1)
        deadline = time.monotonic() + 60
        while not any(m.startswith("waiting:") for m in _messages(e, second["id"])):
            assert time.monotonic() < deadline, e.log()
            time.sleep(0.25)
        time.sleep(2)  # the idle second train worker does not start it
        assert get_job(e.client, e.headers, second["id"])["status"] == "queued"
        assert get_job(e.client, e.headers, first["id"])["status"] == "running"

        assert _cancel(e, first["id"])["status"] == "cancelled"
        done = wait_job(e.client, e.headers, second["id"], timeout=120, log=e.log)
        assert done["status"] == "succeeded", done["error"]
        messages = _messages(e, second["id"])
        waited = next(i for i, m in enumerate(messages) if m.startswith("waiting:"))
        assert "max_running_jobs_per_project" in messages[waited]
        assert any(m.startswith("running (attempt 1)") for m in messages[waited:]), messages
    finally:
        _cancel(e, first["id"])
        if second:
            _cancel(e, second["id"])

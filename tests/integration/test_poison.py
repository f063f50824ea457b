"""Poison tasks end: a task that kills its worker process (os._exit, as an out-of-memory kill would) ends
with a reason after max_task_attempts deliveries, and the worker goes on with the next message.

A real Celery worker process on the embedded filesystem broker and PostgreSQL; the crash comes from the
worker's test-only fault hook (MEDTUNE_TEST_CRASH_FILE lists the ids whose work dies)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from platform_core.config import Settings
from tests.labelled import call, create_job, labelled_split, new_dataset, upload, wait_job, wait_ready
from tests.live import sample_files
from tests.services import WorkerProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

MAX_ATTEMPTS = 2  # MEDTUNE_MAX_TASK_ATTEMPTS (default 3): each death costs Celery's worker_lost_wait (10 s)
# What Celery logs when a pool process dies under a task (acks_late + reject_on_worker_lost: requeued).
CRASH_LINE = re.compile(r"exited with 'exitcode 137'")


@dataclass
class Stack:
    tmp: Path
    env: dict[str, str]
    client: Any
    headers: dict[str, str]
    crash_file: Path

    def worker(self, queues: str) -> WorkerProcess:
        return WorkerProcess(self.env, self.tmp / f"worker-{queues}.log", queues=queues)


@pytest.fixture
def stack(tmp_path: Path, pg_url: str) -> Iterator[Stack]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.live import make_key

    crash_file = tmp_path / "crash-at"
    env = {
        "MEDTUNE_DATA_DIR": str(tmp_path / "data"),
        "MEDTUNE_DATABASE_URL": pg_url,
        "MEDTUNE_OBJECT_STORE_URL": f"file://{tmp_path / 'objects'}",
        "MEDTUNE_BROKER_URL": "filesystem://",
        "MEDTUNE_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.sqlite'}",
        "MEDTUNE_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.sqlite'}",
        "MEDTUNE_DEID_SECRET": "poison-" + secrets.token_hex(16),
        "MEDTUNE_TEST_CRASH_FILE": str(crash_file),
        "MEDTUNE_MAX_TASK_ATTEMPTS": str(MAX_ATTEMPTS),
        "HF_HUB_OFFLINE": "1",
    }
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=pg_url,
        object_store_url=env["MEDTUNE_OBJECT_STORE_URL"],
        broker_url="filesystem://",
        result_backend=env["MEDTUNE_RESULT_BACKEND"],
        mlflow_tracking_uri=env["MEDTUNE_MLFLOW_TRACKING_URI"],
        deid_secret=env["MEDTUNE_DEID_SECRET"],
    )
    _project, key = make_key(settings, f"poison-{secrets.token_hex(3)}")
    with TestClient(create_app(settings)) as client:
        yield Stack(tmp_path, env, client, {"Authorization": f"Bearer {key}"}, crash_file)


def _images(stack: Stack, ds: str) -> dict[str, dict[str, Any]]:
    page = call(stack.client, "GET", f"/v1/datasets/{ds}/images?limit=500", stack.headers)
    return {i["id"]: i for i in page["data"]}


def _crashes(worker: WorkerProcess) -> int:
    return len(CRASH_LINE.findall(worker.output()))


def test_an_image_that_kills_its_worker_is_rejected_and_its_neighbours_and_the_next_upload_go_on(
    stack: Stack,
) -> None:
    paths, _labels = sample_files(stack.tmp / "dicoms", patients=7)
    ds = new_dataset(stack.client, stack.headers, "poison-images")
    chunk = upload(stack.client, stack.headers, ds, paths[:5])  # one message of five image ids
    following = upload(stack.client, stack.headers, ds, paths[5:6])  # the next message, behind it
    poison = chunk[2]
    stack.crash_file.write_text(poison)
    worker = stack.worker("ingest").start()
    try:
        ready = wait_ready(stack.client, stack.headers, ds)
        images = _images(stack, ds)
        assert images[poison]["status"] == "rejected" and images[poison]["reason"] == "worker_crash"
        assert all(images[i]["status"] == "accepted" for i in chunk + following if i != poison), images
        assert ready["counts"]["accepted"] == 5
        # The chunk died once, then the poison image alone until the limit; never worked on again.
        assert _crashes(worker) == MAX_ATTEMPTS, worker.output()[-3000:]
        assert f"killed its worker {MAX_ATTEMPTS} times: rejected" in worker.output()
        after = upload(stack.client, stack.headers, ds, paths[6:])
        wait_for(lambda: _images(stack, ds)[after[0]]["status"] == "accepted", 60, 0.5, what="a later upload")
        assert _crashes(worker) == MAX_ATTEMPTS
    finally:
        worker.stop()


def test_a_job_and_a_batch_prediction_that_kill_their_worker_fail_and_the_next_ones_run(stack: Stack) -> None:
    worker = stack.worker("ingest,train").start()
    infer: WorkerProcess | None = None
    c, h = stack.client, stack.headers
    try:
        ds, split = labelled_split(c, h, stack.tmp / "poison-jobs")
        poison = create_job(c, h, ds, split)
        stack.crash_file.write_text(poison["id"])  # before its run starts: validation comes first
        following = create_job(c, h, ds, split)

        failed = wait_job(c, h, poison["id"], log=worker.output)
        assert failed["status"] == "failed" and failed["error"]["code"] == "worker_crash", failed["error"]
        assert f"ended its worker process {MAX_ATTEMPTS} times" in failed["error"]["message"]
        assert failed["attempts"] == MAX_ATTEMPTS  # each delivery started the run; none came back after
        assert wait_job(c, h, following["id"], log=worker.output)["status"] == "succeeded"
        assert _crashes(worker) == MAX_ATTEMPTS, worker.output()[-3000:]

        # Batch predictions: queued while no infer worker runs, the first one poisoned.
        call(c, "POST", "/v1/models", h, json={"job_id": following["id"], "name": "poison-m"})
        body = {"dataset_id": ds, "split_id": split, "split": "test"}
        batches = [
            call(c, "POST", "/v1/models/poison-m/batch-predictions", h, json=body)["id"] for _ in range(2)
        ]
        stack.crash_file.write_text(batches[0])
        infer = stack.worker("infer").start()

        def ended(batch_id: str) -> Any:
            got = call(c, "GET", f"/v1/models/batch-predictions/{batch_id}", h)
            return got if got["status"] in ("succeeded", "failed") else None

        lost, done = (wait_for(lambda b=b: ended(b), 180, 0.5, what=f"batch {b}") for b in batches)
        assert lost["status"] == "failed" and lost["error"].startswith("worker_crash:"), lost
        assert done["status"] == "succeeded" and done["count"] >= 1, (done, infer.output()[-3000:])
        assert _crashes(infer) == MAX_ATTEMPTS, infer.output()[-3000:]
    finally:
        worker.stop()
        if infer is not None:
            infer.stop()


def test_delivery_counts_survive_a_death_and_go_when_the_work_ends(any_sessions: Any) -> None:
    """What the tasks above rely on, on SQLite and PostgreSQL: a count committed before the work stays
    when the process dies; a handled exception takes its delivery back; an ended work clears it."""
    from platform_core.db import attempts

    keys = [attempts.key("pixels", f"img_{secrets.token_hex(4)}") for _ in range(2)]
    for _ in range(2):  # two deliveries that died
        with any_sessions() as s:
            before = attempts.begin(s, keys)
            s.commit()
    assert before == dict.fromkeys(keys, 1)
    with any_sessions() as s:
        assert attempts.counts(s, keys) == dict.fromkeys(keys, 2)
        attempts.undo(s, keys[:1])
        assert attempts.counts(s, keys) == {keys[0]: 1, keys[1]: 2}
        attempts.clear(s, keys)
        assert attempts.counts(s, keys) == dict.fromkeys(keys, 0)
        attempts.begin(s, keys[:1])
        attempts.undo(s, keys[:1])  # a first delivery taken back leaves no row behind
        assert s.scalar(select(func.count()).where(attempts.TaskAttempt.key.in_(keys))) == 0

"""Embedded mode (`medtune up`): ingestion on a real SQLite file, uploads and pixel work concurrently."""

from __future__ import annotations

import queue
import secrets
import threading
from pathlib import Path
from typing import Any

from platform_core.config import Settings
from platform_core.db.outbox import TaskMessage
from tests.fixtures_dicom import PLANTED, radiograph, to_bytes


def pixel_worker(state: Any, messages: queue.Queue[TaskMessage | None], statuses: list[str | None]) -> None:
    """What worker.tasks.ingest.process_image does: read, work outside a transaction, write first."""
    from platform_core.datasets import ingest
    from platform_core.db.session import unit_of_work

    while (msg := messages.get()) is not None:
        with unit_of_work(state.sessions) as s:
            jobs = ingest.pending_pixels(s, msg.args)
        results = ingest.build_caches(state.store, jobs.values(), secret=state.secret)
        with unit_of_work(state.sessions) as s:
            statuses.extend(ingest.record_pixels(s, results).values())


def test_upload_while_the_worker_commits_on_sqlite(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import build_state, create_app
    from platform_core.auth import service
    from platform_core.db.migrate import upgrade

    settings = Settings(
        data_dir=tmp_path, deid_secret="sqlite-" + secrets.token_hex(16), broker_url="memory://"
    )
    assert settings.db_url.startswith("sqlite:///")
    upgrade(settings.db_url)
    messages: queue.Queue[TaskMessage | None] = queue.Queue()
    state = build_state(settings, dispatch=messages.put)
    with state.sessions() as s:
        project = service.create_project(s, "embedded")
        _key, raw = service.create_key(s, project)
        s.commit()
    auth = {"Authorization": f"Bearer {raw}"}
    statuses: list[str | None] = []
    worker = threading.Thread(target=pixel_worker, args=(state, messages, statuses))
    worker.start()
    try:
        with TestClient(create_app(state=state)) as client:
            body = {"name": "embedded", "task": "binary", "labels": ["x"], "options": {"cache_size": 64}}
            ds_id = client.post("/v1/datasets", json=body, headers=auth).json()["id"]
            for batch in range(6):
                dicoms = [to_bytes(radiograph(patient=batch + 1, instance=i + 1)) for i in range(3)]
                name = f"{PLANTED['patient_name']}.dcm"
                files = [("files", (name, data, "application/dicom")) for data in dicoms]
                r = client.post(f"/v1/datasets/{ds_id}/files", files=files, headers=auth)
                assert r.status_code == 202, r.text
                assert [d["outcome"] for d in r.json()["data"]] == ["queued"] * 3
            again = client.post(f"/v1/datasets/{ds_id}/files", files=files[:1], headers=auth)
            assert again.json()["data"][0]["outcome"] == "duplicate"
            messages.put(None)
            worker.join(60)
            assert statuses == ["accepted"] * 18
            got = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()
            assert got["status"] == "ready"
            assert got["counts"]["accepted"] == 18 and got["counts"]["duplicates"] == 1
            assert got["counts"]["patients"] == 6
            images = client.get(f"/v1/datasets/{ds_id}/images?limit=100", headers=auth).json()["data"]
            assert all(i["pixel_sha256"] for i in images)
        keys = list(state.store.list(f"datasets/{ds_id}/cache/"))
        assert len(keys) == 18 and all(k.endswith(".npy") for k in keys)
        db = Path(settings.db_url.removeprefix("sqlite:///")).read_bytes()
        assert PLANTED["patient_id"].encode() not in db and PLANTED["patient_name"].encode() not in db
    finally:
        messages.put(None)
        worker.join(60)
        state.engine.dispose()

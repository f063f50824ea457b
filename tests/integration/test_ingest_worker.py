"""End to end through a real Celery worker process on Redis and a committed PostgreSQL database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_dicom import PLANTED, radiograph, to_bytes
from tests.services import api_with_ingest_worker, wait_for

pytestmark = pytest.mark.services


def test_worker_builds_the_pixel_cache(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    from platform_core.dicom import cache

    with api_with_ingest_worker(tmp_path, pg_url, redis_url, "e2e") as stack:
        client, auth, state, worker = stack.client, stack.auth, stack.state, stack.worker
        body = {"name": "e2e", "task": "binary", "labels": ["x"], "options": {"cache_size": 96}}
        ds_id = client.post("/v1/datasets", json=body, headers=auth).json()["id"]
        name = f"{PLANTED['patient_name']}.dcm"
        files = [
            ("files", (name, to_bytes(radiograph(patient=60 + i)), "application/dicom")) for i in range(2)
        ]
        r = client.post(f"/v1/datasets/{ds_id}/files", files=files, headers=auth)
        assert [d["outcome"] for d in r.json()["data"]] == ["queued", "queued"]

        def ready() -> Any:
            got = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()
            return got if got["status"] == "ready" else None

        done = wait_for(ready, 90, interval=0.5, what="the worker to build the pixel cache")
        assert done["counts"]["accepted"] == 2, worker.output()[-2000:]
        images = client.get(f"/v1/datasets/{ds_id}/images", headers=auth).json()["data"]
        assert all(i["pixel_sha256"] for i in images)
        keys = list(state.store.list(f"datasets/{ds_id}/cache/"))
        assert len(keys) == 2
        arr = cache.decode(state.store.get_bytes(keys[0]))
        assert max(arr.shape) == 96
        log = worker.output()
        assert "ingest.process_image" in log
        for value in PLANTED.values():
            assert value not in log
        stored = [state.store.get_bytes(k) for k in state.store.list("")]
        assert not any(PLANTED["patient_id"].encode() in data for data in stored)

"""The burned-in text screen end to end: API upload, real Tesseract, a real Celery worker, PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import select

from platform_core.datasets.ingest import process_images
from platform_core.datasets.models import Image as ImageRow
from platform_core.db.models import Base
from tests.fixtures_dicom import radiograph, to_bytes
from tests.services import api_with_ingest_worker, wait_for

pytestmark = pytest.mark.services

NAME, MRN, BIRTH = "Hartfield^Margaret", "58302917", "19480916"
VALUES = ("HARTFIELD", "Hartfield", "MARGARET", "Margaret", MRN, BIRTH)


def cr(patient: int, lines: list[tuple[tuple[int, int], str]], size: int = 480) -> bytes:
    """A CR whose header carries NAME, MRN and BIRTH, with `lines` burned into its pixels (PIL text,
    drawn at the stored maximum as modalities do)."""
    rng = np.random.default_rng(patient)
    y, x = np.mgrid[0:size, 0:size]
    base = (x + y) * (2400 / (2 * size)) + rng.normal(0, 40, (size, size))
    img = Image.fromarray(base.astype(np.float32), mode="F")
    draw = ImageDraw.Draw(img)
    for xy, text in lines:
        draw.text(xy, text, fill=4095.0, font=ImageFont.load_default(size=36))
    ds = radiograph(patient=patient, pixels=np.asarray(img).clip(0, 4095), modality="CR")
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, MRN, BIRTH
    return to_bytes(ds)


def identified(patient: int) -> bytes:
    return cr(patient, [((16, 16), "HARTFIELD, MARGARET"), ((16, 72), f"MRN: {MRN}")])


def marked(patient: int) -> bytes:
    return cr(patient, [((16, 16), "L"), ((240, 16), "PORTABLE")])


def create(client: Any, auth: dict[str, str], **options: Any) -> str:
    body = {"name": "cr", "task": "binary", "labels": ["x"], "options": {"cache_size": 64, **options}}
    r = client.post("/v1/datasets", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def upload(client: Any, auth: dict[str, str], ds_id: str, *files: bytes) -> list[str]:
    parts = [("files", (f"f{i}.dcm", data, "application/dicom")) for i, data in enumerate(files)]
    r = client.post(f"/v1/datasets/{ds_id}/files", files=parts, headers=auth)
    assert r.status_code == 202, r.text
    assert [d["outcome"] for d in r.json()["data"]] == ["queued"] * len(files)
    return [d["image_id"] for d in r.json()["data"]]


def test_hashes_wait_on_the_row_without_a_value_and_go_once_screened(
    client: Any, auth: dict[str, str], app_state: Any, outbox: Any
) -> None:
    ds_id = create(client, auth)
    bad, good = upload(client, auth, ds_id, identified(1), marked(2))
    with app_state.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(ImageRow).where(ImageRow.dataset_id == ds_id))}
        assert all(rows[i].screen_hashes for i in (bad, good))
        columns = [c.key for c in ImageRow.__table__.columns]
        dumped = " ".join(repr([getattr(r, c) for c in columns]) for r in rows.values())
    messages = repr(list(outbox))
    for value in VALUES:
        assert value not in dumped and value not in messages
    assert all(set(m.args) <= {bad, good} for m in outbox)  # ids only
    secret = app_state.secret
    with app_state.sessions() as s:
        statuses = [st for m in outbox for st in process_images(s, app_state.store, m.args, secret=secret)]
        s.commit()
    assert sorted(statuses, key=str) == ["accepted", "rejected"]
    with app_state.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(ImageRow).where(ImageRow.dataset_id == ds_id))}
        rejected = rows[bad]
        assert (rejected.status, rejected.reason, rejected.dicom_key) == ("rejected", "burned_in_phi", None)
        assert rows[good].status == "accepted"
        assert rows[bad].screen_hashes is None and rows[good].screen_hashes is None
    assert len(list(app_state.store.list(f"datasets/{ds_id}/dicom/"))) == 1  # the rejected file is gone


def test_a_real_worker_rejects_burned_in_phi_and_accepts_a_marker(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    with api_with_ingest_worker(tmp_path, pg_url, redis_url, "ocr") as stack:
        client, auth, state, worker = stack.client, stack.auth, stack.state, stack.worker
        screened, unscreened = create(client, auth), create(client, auth, burned_in_text="off")
        bad, good = upload(client, auth, screened, identified(11), marked(12))
        upload(client, auth, unscreened, identified(13))

        def counts(ds_id: str) -> Any:
            got = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()
            return got["counts"] if got["status"] == "ready" else None

        first = wait_for(lambda: counts(screened), 120, interval=0.5, what="the screen in the worker")
        assert (first["accepted"], first["rejected"]) == (1, {"burned_in_phi": 1}), worker.output()[-999:]
        second = wait_for(lambda: counts(unscreened), 60, interval=0.5, what="the unscreened dataset")
        assert (second["accepted"], second["rejected"]) == (1, {}), worker.output()[-999:]
        with state.sessions() as s:
            rows = {r.id: r for r in s.scalars(select(ImageRow).where(ImageRow.id.in_([bad, good])))}
            assert (rows[bad].reason, rows[good].status) == ("burned_in_phi", "accepted")
            assert all(r.screen_hashes is None for r in rows.values())
            tables = Base.metadata.sorted_tables
            dumped = "\n".join(repr(tuple(row)) for t in tables for row in s.execute(select(t)))
        log = worker.output()
        assert "ingest.process_image" in log
        for value in VALUES:
            assert value not in log and value not in dumped
        assert len(list(state.store.list(f"datasets/{screened}/dicom/"))) == 1

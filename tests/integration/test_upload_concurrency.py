"""No request waits on another's network: on SQLite (embedded mode) a slow upload holds no transaction
while it reads its client, so another project writes and reads within a second meanwhile; and a
multipart body with too many parts is refused with 413 before it costs more than the cap."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures_dicom import make_zip, radiograph, to_bytes
from tests.live import Live, live_platform, make_key

BOUNDARY = "medtune-slow-b0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"
RATE = 20 * 1024  # bytes per second
STEP = 2 * 1024


def form(files: list[tuple[str, bytes]], field: str = "files") -> bytes:
    out = []
    for filename, data in files:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n\r\n'
        )
        out += [head.encode(), data, b"\r\n"]
    return b"".join([*out, f"--{BOUNDARY}--\r\n".encode()])


def trickle(body: bytes) -> Iterator[bytes]:
    """The body at RATE, STEP bytes at a time (a chunked request: no Content-Length)."""
    for i in range(0, len(body), STEP):
        time.sleep(STEP / RATE)
        yield body[i : i + STEP]


def timed(call: Callable[[], httpx.Response], expect: int) -> float:
    start = time.monotonic()
    r = call()
    took = time.monotonic() - start
    assert r.status_code == expect, r.text
    return took


def new_dataset(http: httpx.Client, headers: dict[str, str]) -> str:
    r = http.post("/v1/datasets", json={"name": "n", "task": "binary", "labels": ["x"]}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def other_project_meanwhile(http: httpx.Client, headers: dict[str, str], patient: int) -> list[float]:
    """Create a dataset, upload a file into it, list jobs: the seconds each took."""
    ds: list[str] = []

    def create() -> httpx.Response:
        r = http.post("/v1/datasets", json={"name": "b", "task": "binary", "labels": ["x"]}, headers=headers)
        ds.append(r.json().get("id", ""))
        return r

    one = form([(f"b{patient}.dcm", to_bytes(radiograph(patient=patient, size=128)))])
    return [
        timed(create, 201),
        timed(
            lambda: http.post(
                f"/v1/datasets/{ds[0]}/files", content=one, headers={**headers, "content-type": FORM}
            ),
            202,
        ),  # fmt: skip
        timed(lambda: http.get("/v1/fine-tuning/jobs", headers=headers), 200),
    ]


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_slow_upload_on_sqlite_blocks_no_other_project(tmp_path: Path) -> None:
    with live_platform(tmp_path / "data", queues="ingest", sqlite=True) as live:
        assert live.settings.db_url.startswith("sqlite")
        _project, other_key = make_key(live.settings, "other")
        other = {"Authorization": f"Bearer {other_key}"}
        with httpx.Client(base_url=live.url, timeout=120) as http:
            slow_ds = new_dataset(http, live.auth)
            other_project_meanwhile(http, other, 90)  # warm-up: first imports and connections
            first, second = (to_bytes(radiograph(patient=p, size=224)) for p in (1, 2))
            reply: list[httpx.Response] = []
            started = time.monotonic()
            upload = threading.Thread(target=lambda: reply.append(http.post(
                f"/v1/datasets/{slow_ds}/files", content=trickle(form([("a.dcm", first), ("b.dcm", second)])),
                headers={**live.auth, "content-type": FORM}, timeout=120,
            )))  # fmt: skip
            upload.start()
            try:
                time.sleep(1.5)  # authenticated, reading its first part
                early = other_project_meanwhile(http, other, 91)
                # The first file has been recorded and committed while the second still streams in.
                wait_until(lambda: received(http, live, slow_ds) >= 1, 60, "the first part")
                late = other_project_meanwhile(http, other, 92)
                assert max(early + late) < 1.0, (early, late)
                assert upload.is_alive(), "the slow upload ended before the checks ran: nothing was shown"
            finally:
                upload.join(120)
            slow_for = time.monotonic() - started
            assert slow_for > 8, slow_for  # ~2 x 100 KB at 20 KB/s
            assert reply[0].status_code == 202, reply[0].text
            assert [d["outcome"] for d in reply[0].json()["data"]] == ["queued", "queued"]
            wait_until(lambda: accepted(http, live, slow_ds) == 2, 90, f"ingestion\n{live.worker_log()}")

            # A client that goes away mid-body: the whole file it sent before stays, and is ingested.
            third, fourth = (to_bytes(radiograph(patient=p, size=224)) for p in (3, 4))
            body = form([("c.dcm", third), ("d.dcm", fourth)])
            with pytest.raises(Dropped):
                http.post(f"/v1/datasets/{slow_ds}/files", content=then_drop(body[: len(third) + 70_000]),
                          headers={**live.auth, "content-type": FORM})  # fmt: skip
            wait_until(lambda: accepted(http, live, slow_ds) == 3, 90, f"the kept file\n{live.worker_log()}")
            assert received(http, live, slow_ds) == 3


class Dropped(Exception):
    """The client gives up mid-body."""


def then_drop(head: bytes) -> Iterator[bytes]:
    yield head
    time.sleep(1.0)  # the server parses and commits what it has
    raise Dropped


def received(http: httpx.Client, live: Live, ds_id: str) -> int:
    return int(http.get(f"/v1/datasets/{ds_id}", headers=live.auth).json()["counts"]["received"])


def accepted(http: httpx.Client, live: Live, ds_id: str) -> int:
    return int(http.get(f"/v1/datasets/{ds_id}", headers=live.auth).json()["counts"]["accepted"])


@pytest.mark.services
def test_a_body_over_the_parts_cap_is_refused(
    client: Any, auth: dict[str, str], app_state: Any, settings: Any
) -> None:
    """100,000 parts against the default cap (10,000): 413 naming the setting, parsed only to the cap."""
    ds_id = new_dataset(client, auth)
    assert settings.max_multipart_parts == 10_000
    body = form([(f"n{i}", b"") for i in range(100_000)], field="note")
    start = time.monotonic()
    r = client.post(f"/v1/datasets/{ds_id}/files", content=body, headers={**auth, "content-type": FORM})
    assert r.status_code == 413, r.text
    assert "MEDTUNE_MAX_MULTIPART_PARTS" in r.json()["error"]["message"]
    assert time.monotonic() - start < 30

    # STOW-RS counts its parts the same way; parts under the cap still go in.
    settings.max_multipart_parts = 2
    dicoms = [to_bytes(radiograph(patient=p, size=128)) for p in (1, 2, 3)]
    related = {**auth, "content-type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'}
    stow = b"".join(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + d + b"\r\n"
                    for d in dicoms) + f"--{BOUNDARY}--\r\n".encode()  # fmt: skip
    r = client.post(f"/v1/datasets/{ds_id}/dicomweb/studies", content=stow, headers=related)
    assert r.status_code == 413, r.text
    r = client.post(f"/v1/datasets/{ds_id}/files", content=form([("a.dcm", dicoms[0]), ("b.dcm", dicoms[1])]),
                    headers={**auth, "content-type": FORM})  # fmt: skip
    assert r.status_code == 202, r.text


@pytest.mark.services
def test_a_long_part_commits_as_it_goes_and_a_failure_keeps_what_was_committed(
    any_sessions: Any, app_state: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a zip the transaction commits every TXN_SECONDS (0 here: every other member); a request
    that then fails takes back only the file it had not committed, object and row, and still sends
    the pixel tasks of those it had."""
    from sqlalchemy import text

    from platform_core.auth.service import create_project
    from platform_core.datasets import service, uploads
    from platform_core.datasets.ingest import Ingestor
    from platform_core.datasets.schemas import DatasetCreate
    from platform_core.db.session import committer

    monkeypatch.setattr(uploads, "TXN_SECONDS", 0.0)
    sent: list[Any] = []
    zipped = make_zip({f"{i}.dcm": to_bytes(radiograph(patient=100 + i, size=128)) for i in range(4)})
    with any_sessions() as s:
        project = create_project(s, "zips")
        dataset = service.create_dataset(s, project.id, DatasetCreate(name="z", task="binary", labels=["x"]))
        commit = committer(s, sent.append)
        commit()

        def upload_then_fail() -> None:
            with (
                Ingestor(s, app_state.store, app_state.secret, dataset, commit) as ingestor,
                uploads.UploadBatch(ingestor, settings) as batch,
            ):
                batch.file("four.zip", io.BytesIO(zipped))
                batch.file("last.dcm", io.BytesIO(to_bytes(radiograph(patient=110, size=128))))
                raise RuntimeError("the client went away")

        with pytest.raises(RuntimeError):
            upload_then_fail()
        s.rollback()
        keys = s.execute(
            text("select dicom_key from dataset_images where dataset_id = :d"), {"d": dataset.id}
        )
        rows = sorted(str(k) for k in keys.scalars())
    assert len(rows) == 4 and sorted(app_state.store.list(f"datasets/{dataset.id}/")) == rows
    # Their pixel tasks waited for a full chunk; the failing request still sent them, in one message.
    assert [len(m.args) for m in sent] == [4]

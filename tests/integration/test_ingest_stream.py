"""Uploads read as they stream: any chunking, the manifest before or after the images, and a request
that fails midway (over the size limit, a bad manifest, a truncated body) takes back what it had not
committed: every stored object has its row, and no row lacks its object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.fixtures_dicom import make_zip, png, radiograph, to_bytes

pytestmark = pytest.mark.services

BOUNDARY = "medtune-test-b0undary"
FORM = f"multipart/form-data; boundary={BOUNDARY}"


def form(parts: list[tuple[str, str, bytes]]) -> bytes:
    """A multipart/form-data body by hand: (field, filename, bytes) per part."""
    out = b""
    for field, filename, data in parts:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


def chunks(body: bytes, size: int) -> Iterator[bytes]:
    """A chunked body (no Content-Length) cut at arbitrary places, boundaries included."""
    for i in range(0, len(body), size):
        yield body[i : i + size]


def create(client: Any, auth: dict[str, str], labels: list[str] | None = None) -> str:
    body = {"name": "stream", "task": "binary", "labels": labels or ["effusion"]}
    r = client.post("/v1/datasets", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def post(client: Any, auth: dict[str, str], ds_id: str, content: Any) -> Any:
    return client.post(f"/v1/datasets/{ds_id}/files", content=content, headers={**auth, "content-type": FORM})


def stored(app_state: Any, ds_id: str) -> int:
    """How many files the dataset holds, checking the objects and the rows agree one for one."""
    with app_state.sessions() as s:
        keys = s.execute(
            text("select dicom_key from dataset_images where dataset_id = :d"), {"d": ds_id}
        ).scalars()
        rows = sorted(str(k) for k in keys)
    assert sorted(app_state.store.list(f"datasets/{ds_id}/")) == rows
    return len(rows)


MANIFEST = (
    b"path,patient_id,study_id,effusion\n"
    b"images/a.png,00000001,000,1\nb.png,00000002,000,0\nz/c.png,00000003,000,1\n"
)


@pytest.mark.parametrize("manifest_first", [True, False])
def test_manifest_before_or_after_the_images(
    client: Any, auth: dict[str, str], app_state: Any, manifest_first: bool
) -> None:
    ds_id = create(client, auth)
    files = [
        ("files", "a.png", png(seed=1)),
        ("files", "one.dcm", to_bytes(radiograph(patient=51))),
        ("files", "imgs.zip", make_zip({"z/c.png": png(seed=3), "z/d.png": png(seed=4)})),
        ("files", "unlisted.png", png(seed=5)),
        ("files", "b.png", png(seed=2)),
    ]
    manifest = [("manifest", "manifest.csv", MANIFEST)]
    body = form(manifest + files if manifest_first else files + manifest)
    r = post(client, auth, ds_id, chunks(body, 7_919))
    assert r.status_code == 202, r.text
    got = [(d["index"], d["filename"], d["outcome"], d["reason"]) for d in r.json()["data"]]
    assert got == [
        (0, "a.png", "queued", None),
        (1, "one.dcm", "queued", None),
        (2, "imgs.zip/z/c.png", "queued", None),
        (2, "imgs.zip/z/d.png", "rejected", "not_in_manifest"),
        (3, "unlisted.png", "rejected", "not_in_manifest"),
        (4, "b.png", "queued", None),
    ]
    counts = client.get(f"/v1/datasets/{ds_id}", headers=auth).json()["counts"]
    assert counts["labels"]["effusion"] == {"positives": 2, "negatives": 1}
    assert counts["patients"] == 4


def test_images_without_a_manifest_go_by_the_mura_layout(client: Any, auth: dict[str, str]) -> None:
    ds_id = create(client, auth, ["abnormal"])
    mura = make_zip({"XR_HAND/patient00007/study1_positive/image1.png": png(seed=7)})
    body = form([("files", "loose.png", png(seed=6)), ("files", "mura.zip", mura)])
    r = post(client, auth, ds_id, body)
    assert [(d["outcome"], d["reason"]) for d in r.json()["data"]] == [
        ("rejected", "unlabelled_image"),
        ("queued", None),
    ]


def test_a_failing_request_takes_back_what_it_had_not_committed(
    client: Any, auth: dict[str, str], app_state: Any, settings: Any
) -> None:
    """Parts commit before the server reads more of the body (and within long parts), so a failure
    keeps the whole parts committed before it; a part that fails leaves neither object nor row."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    ds_id = create(client, auth)
    good = [("files", f"g{i}.dcm", to_bytes(radiograph(patient=60 + i))) for i in range(3)]

    # A bad manifest after files already de-identified and stored: 422.
    r = post(client, auth, ds_id, form([*good, ("manifest", "m.csv", b"path,patient_id\nx,1\n")]))
    assert r.status_code == 422 and r.json()["error"]["param"] == "manifest"
    assert stored(app_state, ds_id) <= 3

    # Truncated (no closing boundary): 400; the cut part is not stored.
    r = post(client, auth, ds_id, chunks(form(good)[:-40], 4096))
    assert r.status_code == 400
    assert stored(app_state, ds_id) <= 3

    # No `files` part: 422.
    r = post(client, auth, ds_id, form([("other", "x.txt", b"hello")]))
    assert r.status_code == 422 and r.json()["error"]["param"] == "files"

    # A chunked body (no Content-Length) that crosses the request limit after good parts: 413.
    settings.max_request_bytes = 1024 * 1024
    with TestClient(create_app(state=app_state)) as limited:
        big = ("files", "big.dcm", b"\0" * (2 * 1024 * 1024))
        r = post(limited, auth, ds_id, chunks(form([*good, big]), 64 * 1024))
        assert r.status_code == 413, r.text
    assert stored(app_state, ds_id) <= 3

    # The same files in a good request: those kept before come back as duplicates, each stored once.
    r = post(client, auth, ds_id, chunks(form(good), 1000))
    assert {d["outcome"] for d in r.json()["data"]} <= {"queued", "duplicate"}
    assert stored(app_state, ds_id) == 3


def test_a_part_over_the_file_limit_is_rejected_alone(
    client: Any, auth: dict[str, str], settings: Any
) -> None:
    ds_id = create(client, auth)
    small, big = to_bytes(radiograph(patient=71)), to_bytes(radiograph(patient=72, size=320))
    settings.max_upload_bytes = len(big) - 1
    body = form([("files", "big.dcm", big), ("files", "ok.dcm", small)])
    r = post(client, auth, ds_id, chunks(body, 65536))
    assert [(d["outcome"], d["reason"]) for d in r.json()["data"]] == [
        ("rejected", "too_large"),
        ("queued", None),
    ]

"""STOW-RS with the dicomweb-client package, unmodified, against a live uvicorn server."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from tests.fixtures_dicom import radiograph, to_bytes
from tests.services import free_port, wait_for

pytestmark = pytest.mark.services


@pytest.fixture
def live(settings: Any) -> Iterator[tuple[str, Any, str]]:
    """A real server on a free port, on the committed test database with a project of its own."""
    import uvicorn

    from api.app import build_state, create_app
    from platform_core.auth import service

    sent: list[Any] = []
    state = build_state(settings, dispatch=sent.append)
    with state.sessions() as s:
        project = service.create_project(s, f"stow-{secrets.token_hex(4)}")
        _key, raw = service.create_key(s, project)
        s.commit()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(state=state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{base}/healthz", timeout=1).status_code < 500, 15, what="uvicorn")
    yield base, state, raw
    server.should_exit = True
    thread.join(timeout=10)
    state.engine.dispose()


def test_store_instances_with_dicomweb_client(live: tuple[str, Any, str]) -> None:
    base, _state, raw = live
    headers = {"Authorization": f"Bearer {raw}"}
    r = requests.post(f"{base}/v1/datasets", json={"name": "pacs", "task": "binary", "labels": ["x"]},
                      headers=headers, timeout=10)  # fmt: skip
    assert r.status_code == 201, r.text
    ds_id = r.json()["id"]
    session = requests.Session()
    session.headers.update(headers)
    client = DICOMwebClient(url=f"{base}/v1/datasets/{ds_id}/dicomweb", session=session)
    instances = [dcmread(__import__("io").BytesIO(to_bytes(radiograph(patient=30 + i)))) for i in range(3)]
    reply = client.store_instances(instances)
    refs = reply.ReferencedSOPSequence
    assert len(refs) == 3 and "FailedSOPSequence" not in reply
    assert {str(x.ReferencedSOPInstanceUID) for x in refs} == {str(i.SOPInstanceUID) for i in instances}
    counts = requests.get(f"{base}/v1/datasets/{ds_id}", headers=headers, timeout=10).json()["counts"]
    assert counts["pending"] == 3

    # Some good, some bad: 202 with the Failed SOP Sequence naming the bad instance.
    bad = radiograph(patient=40, size=32)
    reply = client.store_instances([dcmread(__import__("io").BytesIO(to_bytes(radiograph(patient=41)))), bad])
    assert len(reply.ReferencedSOPSequence) == 1
    assert reply.FailedSOPSequence[0].ReferencedSOPInstanceUID == bad.SOPInstanceUID
    assert reply.FailedSOPSequence[0].FailureReason == 0xC000

    # Wrong media type: 415.
    r = requests.post(f"{base}/v1/datasets/{ds_id}/dicomweb/studies", data=b"x",
                      headers={**headers, "Content-Type": "application/json"}, timeout=10)  # fmt: skip
    assert r.status_code == 415
    # None stored: 409.
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b1--\r\n"
    related = 'multipart/related; type="application/dicom"; boundary=b1'
    r = requests.post(f"{base}/v1/datasets/{ds_id}/dicomweb/studies", data=body, timeout=10,
                      headers={**headers, "Content-Type": related})  # fmt: skip
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/dicom+json")
    assert "00081198" in r.json()


def test_chunked_body_parts_ingested_as_they_come(live: tuple[str, Any, str]) -> None:
    base, state, raw = live
    headers = {"Authorization": f"Bearer {raw}"}
    r = requests.post(f"{base}/v1/datasets", json={"name": "pacs", "task": "binary", "labels": ["x"]},
                      headers=headers, timeout=10)  # fmt: skip
    ds_id = r.json()["id"]
    url = f"{base}/v1/datasets/{ds_id}/dicomweb/studies"
    related = {**headers, "Content-Type": 'multipart/related; type="application/dicom"; boundary=b2'}
    good = [to_bytes(radiograph(patient=70 + i)) for i in range(3)]
    huge = to_bytes(radiograph(patient=79, size=320))
    body = b"".join(b"--b2\r\nContent-Type: application/dicom\r\n\r\n" + d + b"\r\n" for d in [*good, huge])
    body += b"--b2--\r\n"

    def chunked(data: bytes) -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(data), 5003):
            yield data[i : i + 5003]

    state.settings.max_upload_bytes = len(huge) - 1
    r = requests.post(url, data=chunked(body), headers=related, timeout=30)
    assert r.status_code == 202, r.text
    reply = r.json()
    assert len(reply["00081199"]["Value"]) == 3
    failed = reply["00081198"]["Value"]
    assert len(failed) == 1 and failed[0]["00081197"]["Value"] == [0xA700]  # out of resources
    assert failed[0]["00081155"]["Value"] == [str(radiograph(patient=79).SOPInstanceUID)]

    # Truncated inside a second part: 400. The whole part before it was committed before the server
    # read on, so it stays (sent again, it is a duplicate); the part cut off left nothing.
    before = len(list(state.store.list(f"datasets/{ds_id}/")))
    fresh = b"--b2\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(radiograph(patient=80))
    cut = b"\r\n--b2\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(radiograph(patient=81))[:600]
    r = requests.post(url, data=chunked(fresh + cut), headers=related, timeout=30)
    assert r.status_code == 400
    assert len(list(state.store.list(f"datasets/{ds_id}/"))) == before + 1

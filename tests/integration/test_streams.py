"""Event streams and per-key limits on a live server: a revoked key's open stream ends within the
re-check interval; 200 open streams leave /healthz fast and hold no server thread; past the per-key
stream or prediction limit the API answers 429 with Retry-After."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from tests.live import Live, live_platform
from tests.services import wait_for

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

RECHECK_S = 1.0
STREAMS_PER_KEY = 20  # the default limit


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    # No worker: a job stays in validating_files, so its event stream stays open until told to end.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDTUNE_STREAM_KEY_RECHECK_S", str(RECHECK_S))
        with live_platform(tmp_path_factory.mktemp("streams"), worker=False) as platform:
            assert platform.settings.stream_key_recheck_s == RECHECK_S
            yield platform


@pytest.fixture(scope="module")
def job_id(live: Live) -> str:
    with httpx.Client(base_url=live.url, headers=live.auth) as c:
        ds = c.post("/v1/datasets", json={"name": "streams", "task": "binary", "labels": ["finding"]})
        assert ds.status_code == 201, ds.text
        job = c.post("/v1/fine-tuning/jobs", json={"dataset_id": ds.json()["id"], "base_model": "test_vit"})
        assert job.status_code == 201, job.text
        return str(job.json()["id"])


def _new_key(live: Live) -> tuple[str, dict[str, str]]:
    r = httpx.post(f"{live.url}/v1/api-keys", headers=live.auth, json={"name": "streams"})
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['key']}"}


def _stream_path(job_id: str) -> str:
    return f"/v1/fine-tuning/jobs/{job_id}/events/stream"


def test_a_revoked_keys_open_stream_ends_within_the_recheck_interval(live: Live, job_id: str) -> None:
    key_id, headers = _new_key(live)
    with httpx.Client(base_url=live.url, timeout=httpx.Timeout(10.0, read=60.0)) as c:
        with c.stream("GET", _stream_path(job_id), headers=headers) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            assert next(lines).startswith("id: ")  # the job's first event: the stream is live
            revoked = httpx.delete(f"{live.url}/v1/api-keys/{key_id}", headers=live.auth)
            assert revoked.status_code == 200 and revoked.json()["revoked_at"]
            started = time.monotonic()
            rest = list(lines)  # ends only when the server closes the stream
            took = time.monotonic() - started
    assert took < RECHECK_S + 5, took  # the issue asks for 30 s with the default interval
    assert any("API key was revoked" in line for line in rest), rest
    # The revoked key opens nothing new.
    again = httpx.get(f"{live.url}{_stream_path(job_id)}", headers=headers)
    assert again.status_code == 401 and again.json()["error"]["type"] == "authentication_error"


async def _open_streams(live: Live, job_id: str, keys: list[dict[str, str]], per_key: int) -> dict[str, Any]:
    """Open per_key streams on each key, read each one's first frame, then probe the server."""
    limits = httpx.Limits(max_connections=len(keys) * per_key + 10)
    timeout = httpx.Timeout(30.0, read=60.0)
    async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=timeout) as c:
        opened: list[Any] = []
        try:
            for headers in keys:
                for _ in range(per_key):
                    opened.append(await c.send(c.build_request("GET", _stream_path(job_id), headers=headers),
                                               stream=True))  # fmt: skip
            firsts = await asyncio.gather(*(r.aiter_lines().__anext__() for r in opened))
            over = await c.get(_stream_path(job_id), headers=keys[0])
            latencies = []
            for _ in range(5):
                started = time.monotonic()
                health = await c.get("/healthz")
                latencies.append(time.monotonic() - started)
                assert health.status_code == 200
                await asyncio.sleep(0.3)
            threads = threading.active_count()  # the server runs in this process
            return {"statuses": [r.status_code for r in opened], "firsts": firsts, "over": over,
                    "latencies": latencies, "threads": threads}  # fmt: skip
        finally:
            await asyncio.gather(*(r.aclose() for r in opened))


def test_200_open_streams_leave_healthz_fast_and_hold_no_thread(live: Live, job_id: str) -> None:
    keys = [_new_key(live)[1] for _ in range(10)]
    out = asyncio.run(_open_streams(live, job_id, keys, STREAMS_PER_KEY))
    assert out["statuses"] == [200] * 200
    assert all(first.startswith("id: ") for first in out["firsts"])
    assert max(out["latencies"]) < 1.0, out["latencies"]
    # A stream that slept in a thread would need 200 of them (and starve the 40-thread pool).
    assert out["threads"] < 100, out["threads"]
    over = out["over"]  # the 21st stream of one key
    assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
    assert over.json()["error"]["type"] == "rate_limit_error"
    # Closed streams give their slots back.
    wait_for(lambda: _stream_opens(live, job_id, keys[0]), 10, 0.2, "a stream slot released")


def _stream_opens(live: Live, job_id: str, headers: dict[str, str]) -> bool:
    with httpx.Client(base_url=live.url, timeout=10) as c, c.stream("GET", _stream_path(job_id),
                                                                     headers=headers) as r:  # fmt: skip
        return r.status_code == 200


def _stalled_predict(live: Live, headers: dict[str, str]) -> socket.socket:
    """A predict request whose body stops after its first bytes (a slow link)."""
    url = urlparse(live.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    head = (f"POST /v1/models/nobody/predict HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: {headers['Authorization']}\r\nContent-Type: image/png\r\n"
            "Content-Length: 100000\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + b"\x89PNG" + b"\0" * 100)
    return sock


def _answers(socks: list[socket.socket]) -> list[bytes | str]:
    out: list[bytes | str] = []
    for sock in socks:
        sock.settimeout(1)
        try:
            out.append(sock.recv(2000))
        except OSError as exc:
            out.append(repr(exc))
    return out


def _posted_429(url: str, body: dict[str, Any]) -> httpx.Response | None:
    r = httpx.post(url, **body)
    return r if r.status_code == 429 else None


def test_predictions_past_the_per_key_limit_answer_429_until_one_ends(live: Live) -> None:
    _key_id, headers = _new_key(live)
    limit = live.settings.max_concurrent_predictions_per_key
    url = f"{live.url}/v1/models/nobody/predict"
    body = {"content": b"\x89PNG" + b"\0" * 100, "headers": {**headers, "Content-Type": "image/png"}}
    stalled = [_stalled_predict(live, headers) for _ in range(limit)]
    try:
        try:
            r = wait_for(lambda: _posted_429(url, body), 15, 0.2, "a 429")
        except TimeoutError:
            pytest.fail(f"no 429 while {limit} requests stall; they were answered: {_answers(stalled)}")
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error" and str(limit) in r.json()["error"]["message"]
        # Another key is not held back by this one.
        other = httpx.post(url, content=body["content"],
                           headers={**live.auth, "Content-Type": "image/png"})  # fmt: skip
        assert other.status_code == 404
    finally:
        for sock in stalled:
            sock.close()
    # The clients left: their slots come back, and the request reaches the model lookup (no such model).
    wait_for(lambda: httpx.post(url, **body).status_code == 404, 15, 0.2, "slots released")

"""The SDK against a live server (uvicorn on a free port, PostgreSQL, a real Celery worker): env
defaults, typed answers and errors, parallel uploads of files, folders and zips, labels, pagination,
retries through a flaky gateway, and the async mirror."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import medtune
from medtune import errors
from medtune.models import Dataset, UploadResult
from tests.fixtures_dicom import radiograph, to_bytes
from tests.live import Live, live_platform, sample_files
from tests.services import free_port

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_platform(tmp_path_factory.mktemp("live-sdk"), queues="ingest") as platform:
        yield platform


@pytest.fixture
def client(live: Live) -> Iterator[medtune.Client]:
    with medtune.Client(live.url, live.key, max_retries=2) as c:
        yield c


def new_dataset(client: medtune.Client, name: str = "chest") -> Dataset:
    return client.datasets.create(name, "binary", ["finding"], min_image_size=64)


def test_env_gives_url_and_key(live: Live, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDTUNE_CONFIG_DIR", str(tmp_path))  # no stored login in the way
    monkeypatch.setenv("MEDTUNE_URL", live.url)
    monkeypatch.setenv("MEDTUNE_API_KEY", live.key)
    with medtune.Client() as c:
        project = c.project()
        assert c.base_url == live.url
    assert project.id == live.project_id and "datasets:write" in project.scopes


def test_errors_are_named_after_the_server_type(live: Live, client: medtune.Client) -> None:
    with medtune.Client(live.url, "mt_not-a-key", max_retries=0) as anonymous:
        with pytest.raises(errors.AuthenticationError) as auth:
            anonymous.datasets.list()
    assert auth.value.status_code == 401 and auth.value.message

    with pytest.raises(errors.NotFoundError) as missing:
        client.datasets.get("ds_doesnotexist")
    assert missing.value.status_code == 404 and "ds_doesnotexist" in missing.value.message
    assert missing.value.request_id  # the server's X-Request-ID, for a support ticket

    with pytest.raises(errors.InvalidRequestError) as invalid:
        client.datasets.create("bad", "binary", ["a", "a"])
    assert invalid.value.status_code == 422 and invalid.value.param == "labels"
    assert isinstance(invalid.value, medtune.APIError) and "labels" in str(invalid.value)


def test_upload_files_folders_and_zips_in_parallel_then_labels(
    client: medtune.Client, tmp_path: Path
) -> None:
    ds = new_dataset(client)
    assert ds.status == "ready" and ds.counts.received == 0 and ds.options.min_image_size == 64

    folder = tmp_path / "studies"
    dicoms, labels_csv = sample_files(folder, patients=5)
    (folder / ".DS_Store").write_bytes(b"finder junk")  # hidden: not sent
    (folder / "docs").mkdir()
    (folder / "docs" / "notes.txt").write_text("not a dicom")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("nested/p7.dcm", to_bytes(radiograph(patient=7, size=64, seed=7)))
        zf.writestr("nested/p8.dcm", to_bytes(radiograph(patient=8, size=64, seed=8)))
    single = tmp_path / "p9.dcm"
    single.write_bytes(to_bytes(radiograph(patient=9, size=64, seed=9)))

    # Two files per request and three requests in flight: the answer is still in input order.
    result = client.datasets.upload(ds, [folder, archive, single], parallel=3, batch_files=2, progress=False)
    assert isinstance(result, UploadResult) and result.failed == []
    names = [f.filename for f in result.data]
    assert names == ["docs/notes.txt", *(f"patient{p}.dcm" for p in range(1, 6)),
                     "more.zip/nested/p7.dcm", "more.zip/nested/p8.dcm", "p9.dcm"]  # fmt: skip
    assert [f.index for f in result.data] == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        6,
        7,
    ]  # zip members share their part's index
    assert result.queued == 8 and result.rejected == 1
    assert result.data[0].reason == "not_dicom"

    imported = client.datasets.upload_labels(ds, labels_csv)
    assert imported.rows == 5 and imported.matched == 5 and imported.errors == []

    ready = client.datasets.wait(ds, timeout=120, poll_interval=0.5)
    assert ready.status == "ready"
    assert ready.counts.accepted == 8 and ready.counts.rejected == {"not_dicom": 1}
    assert ready.counts.patients == 8 and ready.counts.labelled_studies == 5
    assert ready.counts.labels["finding"].positives == 3 and ready.counts.labels["finding"].negatives == 2

    # Uploading the same files again stores nothing new.
    again = client.datasets.upload(ds.id, dicoms, progress=False)
    assert again.duplicates == 5 and again.queued == 0

    # Pages of two, walked by iterating the first page.
    first = client.datasets.images(ds, status="accepted", limit=2)
    assert len(first) == 2 and first.has_more
    every = list(first)
    assert len(every) == 8 and len({i.id for i in every}) == 8
    assert all(i.status == "accepted" and i.patient_pseudonym for i in every)
    dicom = client.datasets.download_dicom(ds, every[0].id)
    assert dicom[128:132] == b"DICM"


def test_list_walks_every_page(client: medtune.Client) -> None:
    made = {new_dataset(client, f"page-{i}").id for i in range(3)}
    page = client.datasets.list(limit=1)
    assert len(page.data) == 1 and page.has_more and page.last_id
    seen = [d.id for d in page]
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_missing_path_is_refused_before_sending(client: medtune.Client, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        client.datasets.upload("ds_x", [tmp_path / "nope"], progress=False)


class FlakyGateway:
    """A real HTTP proxy in front of the API that answers 503 to the first `failures` requests."""

    def __init__(self, upstream: str, failures: int, port: int | None = None) -> None:
        self.upstream = upstream
        self.failures = failures
        self.seen: list[str] = []
        self.port = port or free_port()
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def _forward(self) -> None:
                gateway.seen.append(self.command)
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(gateway.seen) <= gateway.failures:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                r = httpx.request(self.command, gateway.upstream + self.path, content=body, headers=headers)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "content-encoding",
                        "connection",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _forward  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_gets_retry_gateway_errors_posts_do_not(live: Live) -> None:
    with (
        FlakyGateway(live.url, failures=2) as gw,
        medtune.Client(f"http://127.0.0.1:{gw.port}", live.key) as c,
    ):
        assert c.project().id == live.project_id
        assert gw.seen == ["GET", "GET", "GET"]

    with (
        FlakyGateway(live.url, failures=1) as gw,
        medtune.Client(f"http://127.0.0.1:{gw.port}", live.key) as c,
    ):
        with pytest.raises(errors.ServiceUnavailableError) as refused:
            c.datasets.create("once", "binary", ["finding"])
        assert refused.value.status_code == 503 and gw.seen == ["POST"]  # not resent: it might have landed


def test_uploads_retry_gateway_errors(live: Live, client: medtune.Client, tmp_path: Path) -> None:
    ds = new_dataset(client, "flaky")
    paths, _ = sample_files(tmp_path / "f", patients=2)
    with (
        FlakyGateway(live.url, failures=1) as gw,
        medtune.Client(f"http://127.0.0.1:{gw.port}", live.key) as c,
    ):
        result = c.datasets.upload(ds, paths, progress=False)
    assert gw.seen == ["POST", "POST"] and result.queued == 2  # the server dedupes, so uploads are resent


def test_connect_errors_are_retried_until_the_server_is_up(live: Live) -> None:
    port = free_port()
    holder: dict[str, FlakyGateway] = {}

    def start_late() -> None:
        time.sleep(0.6)
        holder["gw"] = FlakyGateway(live.url, failures=0, port=port).__enter__()

    threading.Thread(target=start_late, daemon=True).start()
    try:
        with medtune.Client(f"http://127.0.0.1:{port}", live.key, max_retries=6) as c:
            assert c.project().id == live.project_id
    finally:
        if "gw" in holder:
            holder["gw"].__exit__()

    with medtune.Client(f"http://127.0.0.1:{free_port()}", live.key, max_retries=1) as c:
        with pytest.raises(errors.APIConnectionError, match="cannot reach the medtune server"):
            c.project()


def test_async_client_mirrors_the_sync_one(live: Live, tmp_path: Path) -> None:
    paths, labels_csv = sample_files(tmp_path / "a", patients=3)

    async def scenario() -> tuple[Dataset, UploadResult, list[str]]:
        async with medtune.AsyncClient(live.url, live.key) as c:
            assert (await c.project()).id == live.project_id
            ds = await c.datasets.create("async", "binary", ["finding"], min_image_size=64)
            result = await c.datasets.upload(ds, paths, parallel=2, batch_files=1)
            assert (await c.datasets.upload_labels(ds, labels_csv)).matched == 3
            ready = await c.datasets.wait(ds, timeout=120, poll_interval=0.5)
            ids = [image.id async for image in await c.datasets.images(ds, limit=1)]
            with pytest.raises(errors.NotFoundError):
                await c.datasets.get("ds_missing")
            return ready, result, ids

    ready, result, ids = asyncio.run(scenario())
    assert [f.filename for f in result.data] == ["patient1.dcm", "patient2.dcm", "patient3.dcm"]
    assert ready.counts.accepted == 3 and ready.counts.labelled_studies == 3 and len(set(ids)) == 3

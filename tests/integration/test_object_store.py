"""One contract for every ObjectStore backend; the S3 run talks HTTP to a real S3 server (moto)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from platform_core.config import Settings
from platform_core.storage import ObjectStore, open_store
from platform_core.storage.s3 import MULTIPART_THRESHOLD


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'objects'}")
    endpoint = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    settings = Settings(
        data_dir=tmp_path,
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_server_side_encryption="AES256",
    )
    return open_store(f"s3://{bucket}/tenant", settings)


class Exploding(io.RawIOBase):
    """A stream that fails part-way, as a dropped upload does."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            raise ConnectionError("client went away")
        n = min(self.left, size if size > 0 else self.left, 1024 * 1024)
        self.left -= n
        return b"a" * n


def test_put_get_exists_delete(store: ObjectStore) -> None:
    assert not store.exists("a/b.bin")
    with pytest.raises(KeyError):
        store.get_bytes("a/b.bin")
    assert store.put("a/b.bin", io.BytesIO(b"hello")) == 5
    assert store.exists("a/b.bin")
    assert store.get_bytes("a/b.bin") == b"hello"
    assert b"".join(store.open("a/b.bin")) == b"hello"
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")
    store.delete("a/b.bin")  # deleting twice is fine


def test_list_by_prefix(store: ObjectStore) -> None:
    for key in ("ds1/x/1", "ds1/x/2", "ds1/y/3", "ds2/x/4"):
        store.put_bytes(key, key.encode())
    assert sorted(store.list("ds1/")) == ["ds1/x/1", "ds1/x/2", "ds1/y/3"]
    assert sorted(store.list("ds1/x/")) == ["ds1/x/1", "ds1/x/2"]
    assert sorted(store.list("ds2")) == ["ds2/x/4"]


def test_streams_large_objects(store: ObjectStore) -> None:
    size = MULTIPART_THRESHOLD + 3 * 1024 * 1024  # over the multipart threshold on S3
    data = bytes(range(256)) * (size // 256)
    assert store.put("big/blob", io.BytesIO(data)) == len(data)
    chunks: Iterator[bytes] = store.open("big/blob")
    first = next(chunks)
    assert len(first) < len(data)  # streamed, not read whole
    assert first + b"".join(chunks) == data


def test_an_interrupted_put_leaves_no_visible_object(store: ObjectStore) -> None:
    for good in (10, MULTIPART_THRESHOLD + 1024 * 1024):
        with pytest.raises(Exception):  # noqa: B017, PT011 - the backend wraps the error its own way
            store.put(f"partial/{good}", Exploding(good))
        assert not store.exists(f"partial/{good}")
        assert list(store.list("partial/")) == []


def test_invalid_keys_are_refused(store: ObjectStore) -> None:
    for key in ("../etc/passwd", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(ValueError, match="invalid object key"):
            store.put_bytes(key, b"x")


def test_presigned_url_where_the_backend_has_one(store: ObjectStore) -> None:
    store.put_bytes("p/obj", b"signed")
    url = store.presigned_url("p/obj", expires_s=60)
    if store.url.startswith("file://"):
        assert url is None
    else:
        assert url is not None
        assert httpx.get(url).content == b"signed"


def test_check(store: ObjectStore) -> None:
    store.check()

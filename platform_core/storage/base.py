"""The ObjectStore protocol and the factory that picks a backend by URL scheme."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from platform_core.config import Settings

CHUNK = 1024 * 1024


@runtime_checkable
class ObjectStore(Protocol):
    url: str

    def put(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream") -> int:
        """Store the stream under key and return its size; readers see all of it or nothing."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> int: ...

    def open(self, key: str) -> Iterator[bytes]:
        """Stream the object's bytes in chunks; raises KeyError when it does not exist."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        """A time-limited URL where the backend has one, else None."""
        ...

    def check(self) -> None:
        """Raise when the store cannot be reached."""
        ...


def open_store(url: str, settings: Settings | None = None) -> ObjectStore:
    if url.startswith("file://"):
        from platform_core.storage.local import LocalStore

        return LocalStore(url)
    if url.startswith("s3://"):
        from platform_core.storage.s3 import S3Store

        return S3Store.from_settings(url, settings)
    raise ValueError(f"unsupported object store URL '{url}': use file:///path or s3://bucket[/prefix]")


def check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key

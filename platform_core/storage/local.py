"""Objects as files under a root folder; writes land by atomic rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from platform_core.storage.base import CHUNK, check_key

TMP_SUFFIX = ".partial"


class LocalStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(urlparse(url).path).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream") -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=TMP_SUFFIX)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> int:
        import io

        return self.put(key, io.BytesIO(data), content_type)

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None

        def chunks() -> Iterator[bytes]:
            with fh:
                while chunk := fh.read(CHUNK):
                    yield chunk

        return chunks()

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        for dirpath, _dirs, files in os.walk(self.root):
            for name in sorted(files):
                if name.endswith(TMP_SUFFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def presigned_url(self, key: str, expires_s: int = 3600) -> str | None:
        return None

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"object store folder {self.root} is not writable")

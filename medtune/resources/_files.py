"""Upload planning shared by the sync and async clients: expand folders, group files into requests,
count bytes as they are read for the progress bar."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike[str]
DEFAULT_BATCH_FILES = 32
DEFAULT_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class UploadFile:
    path: Path
    # The part's filename: the path relative to the folder given (a manifest CSV names files by it).
    name: str
    size: int


@dataclass(frozen=True)
class Batch:
    offset: int  # index of the batch's first file in the whole upload
    files: tuple[UploadFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def expand(paths: PathLike | Iterable[PathLike]) -> list[UploadFile]:
    """Files as given, folders walked recursively in a stable order; hidden files (.DS_Store) skipped."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[UploadFile] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = sub.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                out.append(UploadFile(sub, rel.as_posix(), sub.stat().st_size))
        elif path.is_file():
            out.append(UploadFile(path, path.name, path.stat().st_size))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return out


def plan(
    files: list[UploadFile], batch_files: int = DEFAULT_BATCH_FILES, batch_bytes: int = DEFAULT_BATCH_BYTES
) -> list[Batch]:
    """Consecutive groups of at most `batch_files` files and about `batch_bytes` bytes (a bigger file,
    e.g. a zip, goes alone): small requests retry cheaply and keep several connections busy."""
    batches: list[Batch] = []
    current: list[UploadFile] = []
    size = 0
    offset = 0
    for f in files:
        if current and (len(current) >= batch_files or size + f.size > batch_bytes):
            batches.append(Batch(offset, tuple(current)))
            offset += len(current)
            current, size = [], 0
        current.append(f)
        size += f.size
    if current:
        batches.append(Batch(offset, tuple(current)))
    return batches


class ByteCounter:
    """Thread-safe running total; a retried attempt gives back what it had counted."""

    def __init__(self, callback: Callable[[int], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self._callback = callback

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n
        if self._callback is not None:
            self._callback(n)


class CountingReader:
    """A read-only file whose reads are counted; httpx streams multipart parts from it in chunks."""

    def __init__(self, path: Path, counter: ByteCounter) -> None:
        self._fh: IO[bytes] = path.open("rb")
        self._counter = counter
        self._position_counted = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._fh.read(size)
        pos = self._fh.tell()
        if pos > self._position_counted:
            self._counter.add(pos - self._position_counted)
            self._position_counted = pos
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()

    def uncount(self) -> None:
        """Take back what this attempt counted, before a retry sends it again."""
        if self._position_counted:
            self._counter.add(-self._position_counted)
            self._position_counted = 0


def content_type(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".zip"):
        return "application/zip"
    if lower.endswith(".png"):
        return "image/png"
    if lower.endswith((".jpg", ".jpeg")):
        return "image/jpeg"
    if lower.endswith(".csv"):
        return "text/csv"
    return "application/dicom" if lower.endswith((".dcm", ".dicom")) else "application/octet-stream"


class BatchFiles:
    """A files factory for one batch: each attempt opens fresh readers and uncounts the last one's."""

    def __init__(self, batch: Batch, counter: ByteCounter, manifest: Path | None = None) -> None:
        self.batch = batch
        self.counter = counter
        self.manifest = manifest
        self._readers: list[CountingReader] = []

    def __call__(self) -> list[tuple[str, Any]]:
        for reader in self._readers:
            reader.uncount()
        self._readers = [CountingReader(f.path, self.counter) for f in self.batch.files]
        parts: list[tuple[str, Any]] = [
            ("files", (f.name, r, content_type(f.name)))
            for f, r in zip(self.batch.files, self._readers, strict=True)
        ]
        if self.manifest is not None:
            parts.append(("manifest", (self.manifest.name, self.manifest.open("rb"), "text/csv")))
        return parts

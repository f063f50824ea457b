"""Uploads to /files, one part at a time as they arrive: DICOM, zips of them, PNG/JPEG with a manifest.

Each `files` part goes through the pipeline as soon as its closing boundary is read (a zip member
by member), so memory holds one part (plus a few object writes in flight), not the upload. The
one exception is PNG/JPEG images that arrive before the request's `manifest` part, if any: which
labels they get depends on that manifest, so their bytes wait in a private temporary file (never
in memory, deleted with the request) and are ingested one by one when the manifest arrives, or
at the end of the body by the MURA folder layout. Outcomes come back in request order either way.

No transaction stays open while the body streams in (on SQLite an open writer would hold the one
write lock, and every other project's writes would wait on this client's network): what the
request has recorded is committed before each block is read from the client, and within a long
part (a zip, images released by a manifest) at least every TXN_SECONDS of work. A request that
fails midway (a bad manifest, a body over a limit, a client gone) rolls back only what it recorded
since then, and the Ingestor takes back those objects; what was committed stays, and the same
files sent again come back as duplicates.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from platform_core.config import Settings
from platform_core.datasets import archives, imaging
from platform_core.datasets.ingest import Ingestor, Outcome
from platform_core.datasets.parts import Part
from platform_core.datasets.schemas import FileOutcome
from platform_core.dicom.read import Rejected
from platform_core.errors import Invalid

MANIFEST_BYTES = 16 * 1024 * 1024
# Longest run of work in one transaction inside a part: on SQLite other writers wait this long at most.
TXN_SECONDS = 0.25
FILES, MANIFEST = "files", "manifest"


@dataclass(frozen=True)
class Waiting:
    """An image held back until the manifest is known: where its outcome goes, where its bytes are."""

    slot: int
    index: int
    name: str
    path: str  # what the manifest matches: the path inside a zip, or the part's file name
    offset: int
    length: int


def limits(settings: Settings) -> archives.Limits:
    return archives.Limits(
        max_total_bytes=settings.max_zip_uncompressed_bytes,
        max_ratio=settings.max_zip_ratio,
        max_member_bytes=settings.max_upload_bytes,
        max_members=settings.max_zip_members,
    )


class UploadBatch:
    """The files of one request into one Ingestor; call finish() for the outcomes, in request order."""

    def __init__(self, ingestor: Ingestor, settings: Settings) -> None:
        self.ingestor = ingestor
        self.settings = settings
        self.out: list[FileOutcome | None] = []
        self.files = 0
        self.table: imaging.Manifest | None = None
        self.manifest_seen = False
        self.waiting: list[Waiting] = []
        self.spool: IO[bytes] | None = None
        self.since: float | None = None  # when the first outcome since the last checkpoint was recorded

    def __enter__(self) -> UploadBatch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def part(self, part: Part) -> None:
        """One multipart part: `files` (repeated) or `manifest`; other form fields are ignored."""
        if part.name == FILES:
            if part.filename is None:  # a text field named `files`: the schema's files are binary parts
                raise Invalid("each `files` part must be a file (a filename in its disposition)", param=FILES)
            self.file(part.filename or f"file{self.files}", part.file, part.size)
        elif part.name == MANIFEST:
            data = part.read(MANIFEST_BYTES)
            if data is None:
                raise Invalid(f"the manifest is over {MANIFEST_BYTES // 2**20} MiB", param=MANIFEST)
            self.manifest(data)

    def manifest(self, data: bytes) -> None:
        if self.manifest_seen:
            raise Invalid("send one manifest part", param=MANIFEST)
        self.table = imaging.Manifest(data, self.ingestor.dataset)
        self.manifest_seen = True
        self._release()

    def file(self, filename: str, fh: IO[bytes], size: int | None = None) -> None:
        """One uploaded file (a DICOM, an image, or a zip of them); its outcomes take the next index."""
        index = self.files
        self.files += 1
        head = fh.read(8)
        fh.seek(0)
        if archives.is_zip(head):
            try:
                for member in archives.members(fh, limits(self.settings)):
                    name = f"{filename}/{member.path}"
                    if member.data is None:
                        self._record(index, name, self.ingestor.reject(member.reason or "corrupt"))
                    else:
                        self._one(index, name, member.data, member.path)
            except Rejected as exc:
                self._record(index, filename, self.ingestor.reject(exc.reason, message=exc.detail))
            return
        limit = self.settings.max_upload_bytes
        if size is not None and size > limit:  # known from the part: refuse without reading it
            self._record(index, filename, self.ingestor.reject("too_large"))
            return
        data = fh.read(limit + 1)
        if len(data) > limit:
            self._record(index, filename, self.ingestor.reject("too_large"))
        else:
            self._one(index, filename, data, filename)

    def checkpoint(self) -> None:
        """Commit what is recorded (the Ingestor's commit, if it has one): before reading the network."""
        self.ingestor.checkpoint(hold_tasks=True)
        self.since = None

    def finish(self) -> list[FileOutcome]:
        """Images still waiting go by the MURA layout; then the Ingestor's own finish()."""
        self._release()
        self.ingestor.finish()
        out = [o for o in self.out if o is not None]
        assert len(out) == len(self.out)
        return out

    def _one(self, index: int, name: str, data: bytes, path: str) -> None:
        if imaging.is_image(data[:8]) and not self.manifest_seen:
            self._wait(index, name, path, data)
        else:
            self._record(index, name, self._ingest(data, path))

    def _ingest(self, data: bytes, path: str) -> Outcome:
        if imaging.is_image(data[:8]):
            table = self.table
            meta = table.find(path) if table is not None else imaging.mura_meta(path, self.ingestor.dataset)
            if meta is None:
                return self.ingestor.reject("not_in_manifest" if table is not None else "unlabelled_image")
            return imaging.ingest_image(self.ingestor, data, meta)
        return self.ingestor.dicom(data)

    def _record(self, index: int, name: str, result: Outcome) -> None:
        self.out.append(_outcome(index, name, result))
        self._pace()

    def _pace(self) -> None:
        """Within a part, commit once this transaction has run TXN_SECONDS, so others' writes get a turn."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif now - self.since >= TXN_SECONDS:
            self.checkpoint()

    def _wait(self, index: int, name: str, path: str, data: bytes) -> None:
        if self.spool is None:
            self.spool = tempfile.TemporaryFile()  # closed in __exit__
        offset = self.spool.seek(0, 2)
        self.spool.write(data)
        self.waiting.append(Waiting(len(self.out), index, name, path, offset, len(data)))
        self.out.append(None)

    def _release(self) -> None:
        """Ingest the waiting images, one at a time, now that the manifest (or its absence) is known."""
        if not self.waiting:
            return
        assert self.spool is not None
        for w in self.waiting:
            self.spool.seek(w.offset)
            data = self.spool.read(w.length)
            self.out[w.slot] = _outcome(w.index, w.name, self._ingest(data, w.path))
            self._pace()
        self.waiting.clear()
        self.spool.seek(0)
        self.spool.truncate()


def _outcome(index: int, filename: str, result: Outcome) -> FileOutcome:
    return FileOutcome(
        index=index, filename=filename, outcome=result.outcome, reason=result.reason,
        image_id=result.image_id, message=result.message,
    )  # fmt: skip

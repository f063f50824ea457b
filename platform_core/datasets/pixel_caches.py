"""Pixel caches built from stored files: decode once, screen for burned-in text, window, resize, write.

No database work and nothing held open: the worker reads what it needs (platform_core.datasets.ingest
pending_pixels), builds here outside any transaction, then records the results in a short one. Object
writes go through Puts, a few threads that overlap the writes with the CPU work on the next file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from platform_core.dicom import burned_in, cache, pixels
from platform_core.dicom.read import DEFAULT_CAPS, Caps, Rejected, load
from platform_core.storage import ObjectStore

# Object writes in flight per request or task: each is durable (fsync, or an S3 PUT) before the
# transaction that references it commits, but they overlap the CPU work on the next file.
PUT_THREADS = 4
MAX_PENDING_PUTS = 8


class Puts:
    """Object writes in a few threads, at most MAX_PENDING_PUTS held in memory; wait() before commit."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[int]] = deque()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(PUT_THREADS, thread_name_prefix="medtune-put")
        while len(self.pending) >= MAX_PENDING_PUTS:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self.store.put_bytes, key, data, content_type))

    def __enter__(self) -> Puts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self) -> None:
        """Every write so far is stored; the first failure raises (and fails the transaction)."""
        while self.pending:
            self.pending.popleft().result()

    def settle(self) -> None:
        """Every write so far has ended, stored or failed (nothing raised): before a cleanup."""
        while self.pending:
            self.pending.popleft().exception()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None


@dataclass(frozen=True)
class PixelJob:
    image_id: str
    dataset_id: str
    source: str
    status: str
    dicom_key: str | None
    cache_size: int
    screen: tuple[str, ...] = ()  # keyed hashes for the burned-in text screen; empty: no screen

    @property
    def pending(self) -> bool:
        return self.status == "queued" and self.dicom_key is not None


@dataclass(frozen=True)
class PixelResult:
    image_id: str
    status: str  # accepted | rejected
    reason: str | None = None
    cache_key: str | None = None
    pixel_sha256: str | None = None
    delete_key: str | None = None  # a rejected image's stored file, removed once this is recorded


def build_caches(
    store: ObjectStore, jobs: Iterable[PixelJob], *, secret: str, caps: Caps = DEFAULT_CAPS
) -> list[PixelResult]:
    """Decode once, screen for burned-in identifiers, window, resize, write each pixel cache; no
    database work (none held open). `secret` is the de-identification secret the screen hashes with."""
    out: list[PixelResult] = []
    with Puts(store) as puts:
        for job in jobs:
            if job.pending:
                out.append(_pixels(store, puts, job, secret, caps))
        puts.wait()
    return out


def _pixels(store: ObjectStore, puts: Puts, job: PixelJob, secret: str, caps: Caps) -> PixelResult:
    assert job.dicom_key is not None
    try:
        data = store.get_bytes(job.dicom_key)
        if job.source == "dicom":
            img = pixels.decode(load(data, caps), caps.max_pixels)  # the header's size first
        else:
            img = pixels.decode_image(data, caps.max_pixels)
        del data
        arr = pixels.to_cache(img, job.cache_size)
    except Rejected as exc:
        return PixelResult(job.image_id, "rejected", exc.reason, delete_key=job.dicom_key)
    if job.screen and burned_in.finds_phi(secret, job.screen, img):
        return PixelResult(job.image_id, "rejected", burned_in.REASON, delete_key=job.dicom_key)
    key = f"datasets/{job.dataset_id}/cache/{job.image_id}{cache.SUFFIX}"
    puts.put(key, cache.encode(arr), cache.CONTENT_TYPE)
    return PixelResult(job.image_id, "accepted", None, key, cache.content_hash(arr))

"""A thread-based micro-batcher: items submitted within a short window run as one batch.

One dispatcher thread per batcher collects items until `window_ms` has passed since the oldest
waiting item or `max_batch` items wait, then calls `run` with them on that same thread. Items that
arrive while a batch runs wait for the next one, so under load batches fill up on their own.
Callers get a concurrent Future: sync code blocks on `.result()`, async code awaits
`asyncio.wrap_future(...)`. No torch here: the batcher knows nothing of what it batches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    pass


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: Future[R]
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher(Generic[T, R]):
    """`run(items) -> results` (same length, same order); an exception fails the whole batch."""

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        window_ms: float,
        max_batch: int,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.window_s = max(0.0, window_ms) / 1000.0
        self.max_batch = max_batch
        self.stats = BatcherStats()
        self._queue: deque[_Pending[T, R]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            self._queue.append(_Pending(item, future))
            self._cond.notify()
        return future

    def submit_many(self, items: Sequence[T]) -> list[Future[R]]:
        """Queue several items at once, so they land in the same window."""
        futures: list[Future[R]] = [Future() for _ in items]
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            now = time.monotonic()
            self._queue.extend(_Pending(i, f, now) for i, f in zip(items, futures, strict=True))
            self._cond.notify()
        return futures

    def close(self, timeout: float | None = 5.0) -> None:
        """Refuse new items, finish those already queued, stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _take(self) -> list[_Pending[T, R]] | None:
        with self._cond:
            while True:
                if self._queue:
                    full = len(self._queue) >= self.max_batch
                    wait = self._queue[0].arrived + self.window_s - time.monotonic()
                    if full or wait <= 0 or self._closed:
                        n = min(self.max_batch, len(self._queue))
                        return [self._queue.popleft() for _ in range(n)]
                    self._cond.wait(wait)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.stats.batches += 1
            self.stats.items += len(live)
            self.stats.largest = max(self.stats.largest, len(live))
            if len(self.stats.sizes) < 10_000:
                self.stats.sizes.append(len(live))
            try:
                results = self._run([p.item for p in live])
                if len(results) != len(live):
                    got, want = len(results), len(live)
                    raise RuntimeError(f"the batch function returned {got} results for {want} items")
            except BaseException as exc:  # every waiter must hear about the failure
                for p in live:
                    p.future.set_exception(exc)
                continue
            for p, result in zip(live, results, strict=True):
                p.future.set_result(result)

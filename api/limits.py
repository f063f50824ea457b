"""Per-key concurrency limits held by this API process: predictions running and event streams open."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from platform_core.config import Settings
from platform_core.errors import TooManyRequests


@dataclass
class KeySlots:
    """At most `limit` holders per API key at once; one more is answered 429 with Retry-After."""

    limit: int
    what: str
    retry_after_s: int = 1
    _held: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key_id: str) -> Slot:
        with self._lock:
            if self._held[key_id] >= self.limit:
                raise TooManyRequests(
                    f"this API key already has {self.limit} {self.what} at once (the limit); "
                    "retry when one has ended",
                    retry_after=self.retry_after_s,
                )
            self._held[key_id] += 1
        return Slot(self, key_id)

    def held(self, key_id: str) -> int:
        with self._lock:
            return self._held[key_id]

    def _release(self, key_id: str) -> None:
        with self._lock:
            self._held[key_id] -= 1
            if self._held[key_id] <= 0:
                del self._held[key_id]

    @contextmanager
    def hold(self, key_id: str) -> Iterator[Slot]:
        slot = self.acquire(key_id)
        try:
            yield slot
        finally:
            slot.release()


@dataclass
class Slot:
    slots: KeySlots
    key_id: str
    released: bool = False

    def release(self) -> None:
        # Idempotent: the stream's own end and the response's end may both release it.
        if not self.released:
            self.released = True
            self.slots._release(self.key_id)


@dataclass
class Limits:
    predictions: KeySlots
    streams: KeySlots

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            predictions=KeySlots(settings.max_concurrent_predictions_per_key, "prediction requests", 1),
            streams=KeySlots(settings.max_streams_per_key, "event streams open", 5),
        )


def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


LimitsDep = Annotated[Limits, Depends(get_limits)]


class EventStreamResponse(StreamingResponse):
    """Server-sent events that release their slot when the response ends, however it ends (also when
    the client leaves before the first frame, where the generator's own `finally` never runs)."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[str], slot: Slot) -> None:
        super().__init__(frames, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()

"""Server-sent event streams: async generators that hold no thread while idle, read in short sync
calls (a session per read, none across a sleep) shared by the streams that watch the same thing,
re-check their key and end once it is revoked."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.limits import EventStreamResponse, Slot
from api.state import AppState
from platform_core.auth.service import key_active

T = TypeVar("T")
KEY_REVOKED = ": the API key was revoked or its project deleted; the stream ends\n\n"
KEEPALIVE = ": keep-alive\n\n"


@dataclass(frozen=True)
class Pacing:
    poll_s: float = 0.5  # after news, and at first; doubles while quiet, up to max_poll_s
    max_poll_s: float = 3.0
    keepalive_s: float = 15.0
    max_s: float = 6 * 3600.0
    key_recheck_s: float = 30.0


@dataclass(frozen=True)
class Polled:
    frames: list[str]
    done: bool  # nothing more will come after these frames


Poll = Callable[[], Awaitable[Polled]]


@dataclass
class SharedReads:
    """At most one read per key per `ttl_s`, shared by every stream that asks for that key: 200
    streams watching one job cost one query, not 200, and wait for it without a thread each."""

    ttl_s: float = 0.5
    _entries: dict[Hashable, tuple[float, Any]] = field(default_factory=dict)
    _locks: dict[Hashable, asyncio.Lock] = field(default_factory=dict)

    async def get(self, key: Hashable, read: Callable[[], T]) -> T:
        hit = self._fresh(key)
        if hit is None:
            async with self._locks.setdefault(key, asyncio.Lock()):
                hit = self._fresh(key)
                if hit is None:
                    hit = (time.monotonic(), await run_in_threadpool(read))
                    self._entries[key] = hit
                    self._sweep()
        value: T = hit[1]
        return value

    def _fresh(self, key: Hashable) -> tuple[float, Any] | None:
        hit = self._entries.get(key)
        return hit if hit is not None and time.monotonic() - hit[0] < self.ttl_s else None

    def _sweep(self, keep: int = 4096, max_age_s: float = 60.0) -> None:
        if len(self._entries) <= keep:
            return
        now = time.monotonic()
        for key in [k for k, (at, _v) in self._entries.items() if now - at > max_age_s]:
            self._entries.pop(key, None)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]


def get_shared_reads(request: Request) -> SharedReads:
    shared: SharedReads = request.app.state.shared_reads
    return shared


SharedReadsDep = Annotated[SharedReads, Depends(get_shared_reads)]


def event_stream(
    state: AppState, shared: SharedReads, key_id: str, slot: Slot, poll: Poll, pacing: Pacing
) -> EventStreamResponse:
    return EventStreamResponse(_frames(state, shared, key_id, poll, pacing), slot)


async def _frames(
    state: AppState, shared: SharedReads, key_id: str, poll: Poll, pacing: Pacing
) -> AsyncIterator[str]:
    started = last_sent = last_check = time.monotonic()
    delay = pacing.poll_s
    while time.monotonic() - started < pacing.max_s:
        polled = await poll()
        for frame in polled.frames:
            yield frame
        if polled.done:
            return
        now = time.monotonic()
        if now - last_check >= pacing.key_recheck_s:
            if not await shared.get(("api-key", key_id), lambda: _key_active(state, key_id)):
                yield KEY_REVOKED
                return
            last_check = now
        if polled.frames:
            last_sent, delay = now, pacing.poll_s
            continue
        if now - last_sent >= pacing.keepalive_s:
            last_sent = now
            yield KEEPALIVE
        # Jitter spreads the polls of streams opened together, which would otherwise poll in lockstep.
        await asyncio.sleep(min(delay, pacing.key_recheck_s) * random.uniform(0.8, 1.2))
        delay = min(delay * 2, pacing.max_poll_s)


def _key_active(state: AppState, key_id: str) -> bool:
    with state.sessions_for("GET")() as session:
        return key_active(session, key_id)

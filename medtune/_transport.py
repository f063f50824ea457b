"""What the sync and async clients share: the retry policy, request options and the SSE parser."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "medtune-python/0.1.0"


@dataclass(frozen=True)
class RetryPolicy:
    """Connect errors are always retried (the request never left); gateway errors and read timeouts
    only for idempotent requests, where doing the work twice is harmless."""

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        if response is not None and (after := retry_after(response)) is not None:
            return min(after, self.max_backoff_s * 4)
        base = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # jitter keeps parallel uploads from retrying in step

    def retry_status(self, status: int, idempotent: bool) -> bool:
        return idempotent and status in RETRY_STATUSES

    @staticmethod
    def retry_error(exc: Exception, idempotent: bool) -> bool:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True
        return idempotent and isinstance(exc, httpx.ReadTimeout | httpx.RemoteProtocolError | httpx.ReadError)


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


# `files` may be a factory: a retried upload must reopen its files, a consumed stream cannot be resent.
FilesArg = list[tuple[str, Any]] | Callable[[], list[tuple[str, Any]]] | None


@dataclass
class RequestOptions:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: FilesArg = None
    data: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | httpx.Timeout | None = None
    idempotent: bool | None = None

    @property
    def is_idempotent(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method.upper() in IDEMPOTENT_METHODS

    def open_files(self) -> list[tuple[str, Any]] | None:
        return self.files() if callable(self.files) else self.files

    def build(
        self, http: httpx.Client | httpx.AsyncClient, files: list[tuple[str, Any]] | None
    ) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        extensions = {}
        if self.timeout is not None:
            t = self.timeout if isinstance(self.timeout, httpx.Timeout) else httpx.Timeout(self.timeout)
            extensions["timeout"] = t.as_dict()
        return http.build_request(
            self.method,
            self.path,
            params=params or None,
            json=self.json,
            files=files,
            data=self.data,
            content=self.content,
            headers=self.headers or None,
            extensions=extensions or None,
        )


def close_files(files: list[tuple[str, Any]] | None) -> None:
    """Close file objects a files factory opened for one attempt."""
    for _name, value in files or []:
        handle = value[1] if isinstance(value, tuple) else value
        close = getattr(handle, "close", None)
        if close is not None:
            close()


def connection_error(exc: httpx.TransportError, base_url: str) -> Exception:
    from medtune.errors import APIConnectionError, APITimeoutError

    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"timed out talking to {base_url}: {exc}")
    return APIConnectionError(f"cannot reach the medtune server at {base_url}: {exc}")


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSEDecoder:
    """Incremental form of parse_sse for async line streams."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []
        self.last_id: str | None = None
        self.retry: int | None = None

    def feed(self, raw: str) -> ServerSentEvent | None:
        line = raw.rstrip("\r\n")
        if not line:
            out = None
            if self.data:
                out = ServerSentEvent(self.event, "\n".join(self.data), self.last_id, self.retry)
            self.event, self.data, self.retry = "message", [], None
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.event = value or "message"
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Server-sent events per the HTML spec: fields until a blank line; comments (':') ignored."""
    decoder = SSEDecoder()
    for raw in lines:
        if (event := decoder.feed(raw)) is not None:
            yield event
    if (event := decoder.feed("")) is not None:
        yield event

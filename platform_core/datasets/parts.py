"""Multipart bodies read as they stream: each part spooled on its own and handed over the moment it ends.

Used by both upload endpoints (multipart/form-data for /files, multipart/related for STOW-RS). The
caller feeds body blocks as they arrive; python-multipart's streaming parser calls back per part;
the part's bytes go to a spool that stays in memory up to SPOOL_BYTES and past that moves to a
private temporary file (unlinked at creation). When the part's closing boundary is seen, on_part
runs on it synchronously, then the spool is closed (and its bytes gone) before the parser reads
on: at most one part is ever held, whatever the number or size of the parts. Parts are counted as
they begin: past `max_parts` the body is refused (413) before that part is read. After each block
is parsed, before the next one is read from the client, on_block_end runs (the caller commits).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from platform_core.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

SPOOL_BYTES = 1024 * 1024


def _spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(SPOOL_BYTES)


@dataclass
class Part:
    """One body part: raw headers (lower-case names), its bytes in a spool, its size."""

    headers: dict[str, bytes] = field(default_factory=dict)
    file: IO[bytes] = field(default_factory=_spool)
    size: int = 0

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-case; "" when the part has none."""
        kind, _params = parse_options_header(self.headers.get("content-type", b""))
        return kind.decode("latin-1").strip().lower()

    def _disposition(self, key: bytes) -> str | None:
        _kind, params = parse_options_header(self.headers.get("content-disposition", b""))
        value = params.get(key)
        return value.decode("utf-8", "replace") if value is not None else None

    @property
    def name(self) -> str | None:
        """The form field name (Content-Disposition: form-data; name=...)."""
        return self._disposition(b"name")

    @property
    def filename(self) -> str | None:
        return self._disposition(b"filename")

    def read(self, limit: int) -> bytes | None:
        """The whole part, or None when it is over `limit` bytes (nothing read then)."""
        if self.size > limit:
            return None
        self.file.seek(0)
        return self.file.read()


class _Collector:
    """The parser's callbacks: one Part at a time, handed to on_part as it ends, then closed."""

    def __init__(self, on_part: Callable[[Part], None], max_parts: int) -> None:
        self.on_part = on_part
        self.max_parts = max_parts
        self.current: Part | None = None
        self.name, self.value = bytearray(), bytearray()
        self.ended = False
        self.count = 0

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.count += 1
        if self.count > self.max_parts:
            raise PayloadTooLarge(
                f"the body has more than {self.max_parts} parts (MEDTUNE_MAX_MULTIPART_PARTS): "
                "send the rest in another request (parts already ingested stay)"
            )
        self.current = Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.name.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value.extend(data[start:end])

    def on_header_end(self) -> None:
        assert self.current is not None
        self.current.headers[self.name.decode("latin-1").strip().lower()] = bytes(self.value).strip()
        self.name.clear()
        self.value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        assert self.current is not None
        self.current.file.write(data[start:end])
        self.current.size += end - start

    def on_part_end(self) -> None:
        part, self.current = self.current, None
        assert part is not None
        try:
            part.file.seek(0)
            self.on_part(part)
        finally:
            part.file.close()

    def on_end(self) -> None:
        self.ended = True


def stream_parts(
    boundary: bytes,
    blocks: Iterable[bytes],
    on_part: Callable[[Part], None],
    max_parts: int,
    on_block_end: Callable[[], None] | None = None,
) -> None:
    """Parse the body block by block, calling on_part(part) as each part ends (in body order).

    A malformed or truncated body raises BadRequest, one with more than `max_parts` parts
    PayloadTooLarge (the parts already handed over stay handed over: the caller decides what becomes
    of them). Errors raised by on_part propagate unchanged.
    """
    collector = _Collector(on_part, max_parts)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        for block in blocks:
            try:
                parser.write(block)
            except MultipartParseError:
                raise BadRequest("malformed multipart body") from None
            if on_block_end is not None:
                on_block_end()
        parser.finalize()
        if not collector.ended:
            raise BadRequest("the multipart body ends before its closing boundary")
    finally:
        if collector.current is not None:
            collector.current.file.close()

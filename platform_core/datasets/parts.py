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
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from platform_core.errors import BadRequest, PayloadTooLarge

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
    current: Part | None = None
    name, value = bytearray(), bytearray()
    ended = False
    count = 0

    def on_part_begin() -> None:
        nonlocal current, count
        count += 1
        if count > max_parts:
            raise PayloadTooLarge(
                f"the body has more than {max_parts} parts (MEDTUNE_MAX_MULTIPART_PARTS): "
                "send the rest in another request (parts already ingested stay)"
            )
        current = Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        assert current is not None
        current.headers[name.decode("latin-1").strip().lower()] = bytes(value).strip()
        name.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        assert current is not None
        current.file.write(data[start:end])
        current.size += end - start

    def on_part_end() -> None:
        nonlocal current
        part, current = current, None
        assert part is not None
        try:
            part.file.seek(0)
            on_part(part)
        finally:
            part.file.close()

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        for block in blocks:
            try:
                parser.write(block)
            except MultipartParseError:
                raise BadRequest("malformed multipart body") from None
            if on_block_end is not None:
                on_block_end()
        parser.finalize()
        if not ended:
            raise BadRequest("the multipart body ends before its closing boundary")
    finally:
        if current is not None:
            current.file.close()

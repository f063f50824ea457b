"""Zip archives read safely: no path escapes, no nested archives, no bombs (members, total size, ratio)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from platform_core.dicom.read import Rejected

DEFAULT_MAX_MEMBERS = 50_000  # Settings.max_zip_members


@dataclass(frozen=True)
class Limits:
    max_total_bytes: int
    max_ratio: float
    max_member_bytes: int
    max_members: int = DEFAULT_MAX_MEMBERS


@dataclass
class Member:
    path: str
    data: bytes | None  # None when rejected
    reason: str | None = None


def is_zip(head: bytes) -> bool:
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts


def members(fh: IO[bytes], limits: Limits) -> Iterator[Member]:
    """Yield each file entry in archive order; unusable entries come with a reason, not data.

    Raises Rejected for an archive that is unreadable or a bomb as a whole (more members than
    max_members: `too_many_members`, checked before any is read; declared total over the limit:
    `zip_bomb`). Sizes are enforced on the bytes actually inflated, not only the declared ones.
    """
    try:
        archive = zipfile.ZipFile(fh)
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError):
        raise Rejected("corrupt") from None
    if len(infos) > limits.max_members:
        raise Rejected(
            "too_many_members",
            f"the archive holds {len(infos):,} files; the limit is {limits.max_members:,} "
            "(MEDTUNE_MAX_ZIP_MEMBERS): split it",
        )
    if sum(i.file_size for i in infos) > limits.max_total_bytes:
        raise Rejected("zip_bomb")
    inflated = 0
    with archive:
        for info in infos:
            name = info.filename
            if _unsafe(name):
                yield Member(name, None, "unsafe_path")
                continue
            if info.flag_bits & 0x1:
                yield Member(name, None, "encrypted")
                continue
            if info.file_size > limits.max_member_bytes:
                yield Member(name, None, "too_large")
                continue
            if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
                yield Member(name, None, "zip_bomb")
                continue
            try:
                with archive.open(info) as src:
                    data = src.read(limits.max_member_bytes + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
                yield Member(name, None, "corrupt")
                continue
            inflated += len(data)
            if len(data) > limits.max_member_bytes or inflated > limits.max_total_bytes:
                yield Member(name, None, "zip_bomb")
                continue
            if is_zip(data[:4]):
                yield Member(name, None, "nested_archive")
                continue
            yield Member(name, data)

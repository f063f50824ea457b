"""What every resource shares: its client and id handling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from medtune.aio import AsyncClient
    from medtune.client import Client


def id_of(value: Any) -> str:
    """Accept an id or an object with `.id` (a Dataset, a Job, ...)."""
    ident = value if isinstance(value, str) else getattr(value, "id", None)
    if not isinstance(ident, str) or not ident:
        raise TypeError(f"expected an id or an object with an id, got {value!r}")
    return quote(ident, safe="")


def seg(value: str) -> str:
    """A path segment (a model name, an alias) escaped for the URL."""
    return quote(value, safe=":@")


class SyncResource:
    def __init__(self, client: Client) -> None:
        self._client = client


class AsyncResource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

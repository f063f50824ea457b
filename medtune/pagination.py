"""Cursor pages over `{data, has_more, first_id, last_id}`: iterate a page to walk every item."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from medtune.models import PageData, Resource

T = TypeVar("T", bound=Resource)


class Page(Generic[T]):
    """One page; `for item in page` fetches the following pages as it goes (`after=last_id`)."""

    def __init__(self, page: PageData[T], fetch_after: Callable[[str], Page[T]]) -> None:
        self.data = page.data
        self.has_more = page.has_more
        self.first_id = page.first_id
        self.last_id = page.last_id
        self._fetch_after = fetch_after

    def __iter__(self) -> Iterator[T]:
        page: Page[T] | None = self
        while page is not None:
            yield from page.data
            page = page.next_page()

    def __len__(self) -> int:
        return len(self.data)

    def next_page(self) -> Page[T] | None:
        if not self.has_more or not self.last_id:
            return None
        return self._fetch_after(self.last_id)

    def __repr__(self) -> str:
        return f"Page(data={len(self.data)} items, has_more={self.has_more}, last_id={self.last_id!r})"


class AsyncPage(Generic[T]):
    """The async mirror: `async for item in page`."""

    def __init__(self, page: PageData[T], fetch_after: Callable[[str], Awaitable[AsyncPage[T]]]) -> None:
        self.data = page.data
        self.has_more = page.has_more
        self.first_id = page.first_id
        self.last_id = page.last_id
        self._fetch_after = fetch_after

    async def __aiter__(self) -> AsyncIterator[T]:
        page: AsyncPage[T] | None = self
        while page is not None:
            for item in page.data:
                yield item
            page = await page.next_page()

    def __len__(self) -> int:
        return len(self.data)

    async def next_page(self) -> AsyncPage[T] | None:
        if not self.has_more or not self.last_id:
            return None
        return await self._fetch_after(self.last_id)

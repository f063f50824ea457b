"""The one cursor page every list answers with: {data, has_more, first_id, last_id}. Ids are time-ordered,
so the last id of a page is the cursor (`after`) of the next; a repository fetches limit + 1 rows and the
extra one says whether more remain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

T = TypeVar("T", bound=Any)
S = TypeVar("S")


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None

    @overload
    @classmethod
    def build(cls, rows: Sequence[T], limit: int) -> Page[T]: ...

    @overload
    @classmethod
    def build(cls, rows: Sequence[S], limit: int, shape: Callable[[S], T]) -> Page[T]: ...

    @classmethod
    def build(cls, rows: Sequence[Any], limit: int, shape: Callable[[Any], Any] | None = None) -> Page[Any]:
        """`rows` was fetched with limit + 1 (each with an `id`); only the first `limit` are shaped."""
        kept = list(rows[:limit])
        data = [shape(r) for r in kept] if shape is not None else kept
        return cls(
            data=data,
            has_more=len(rows) > limit,
            first_id=kept[0].id if kept else None,
            last_id=kept[-1].id if kept else None,
        )

    @classmethod
    def of_list(cls, items: Sequence[T], limit: int, after: str | None) -> Page[T]:
        """A page of a list computed whole (the base-model catalog): the items after `after`, in order.
        An `after` not in the list gives an empty page, as a cursor past the end does in a query."""
        start = 0
        if after is not None:
            ids = [i.id for i in items]
            start = ids.index(after) + 1 if after in ids else len(items)
        return cls.build(items[start : start + limit + 1], limit)

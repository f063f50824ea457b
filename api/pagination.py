"""Cursor pagination: {data, has_more, first_id, last_id}; ids are time-ordered, so `after` is a cursor."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel


class HasId(Protocol):
    id: str


T = TypeVar("T", bound=Any)


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None

    @classmethod
    def build(cls, items: list[T], limit: int) -> Page[T]:
        """`items` was fetched with limit + 1 rows so one extra tells whether more remain."""
        page = items[:limit]
        return cls(
            data=page,
            has_more=len(items) > limit,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
        )

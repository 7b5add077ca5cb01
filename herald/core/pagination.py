"""Every list answers the same way: `items`, `page`, `limit`, `total` (and `pages`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.schemas import CamelModel

T = TypeVar("T")

MAX_LIMIT = 100
# Far beyond any real list, small enough that page * limit never overflows an SQL OFFSET.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class PageParams:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


class Page(CamelModel, Generic[T]):
    items: list[T]
    page: int
    limit: int
    total: int
    pages: int

    @classmethod
    def model_parametrized_name(cls, params: tuple[Any, ...]) -> str:
        return f"{getattr(params[0], '__name__', 'Item')}Page"  # "FriendRequestOutPage" in /docs


def page_of(items: Sequence[T], params: PageParams, total: int) -> Page[T]:
    return Page[T](
        items=list(items),
        page=params.page,
        limit=params.limit,
        total=total,
        pages=math.ceil(total / params.limit) if total else 0,
    )


async def fetch_page(
    session: AsyncSession, query: Select[Any], params: PageParams
) -> tuple[list[Any], int]:
    """One page of `query`'s rows and the total count of all its rows."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.scalars(query.offset(params.offset).limit(params.limit))).all()
    return list(rows), int(total or 0)

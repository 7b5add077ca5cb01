"""The per-process webhook endpoint cache, without a server: a reload after a change must not
be satisfied by a load that read the table before the change."""

from __future__ import annotations

import asyncio
from typing import Any

from herald.webhooks.registry import Endpoint, EndpointCache

NEW = Endpoint(id=7, url="http://127.0.0.1:1/h", events=frozenset({"*"}), secret="whsec_x")


class Table:
    """Stands for the endpoints table: each load returns what was committed when it began,
    and the first (background) load can be held open."""

    def __init__(self) -> None:
        self.committed: list[Endpoint] = []
        self.hold = asyncio.Event()
        self.loads = 0

    async def load(self) -> list[Endpoint]:
        seen, self.loads = list(self.committed), self.loads + 1
        if self.loads == 2:  # the background reload, begun before the commit
            await self.hold.wait()
        return seen


async def test_a_reload_after_a_change_does_not_count_a_load_begun_before_it() -> None:
    table = Table()
    cache = EndpointCache(db=None, ttl=60)  # type: ignore[arg-type]
    cache._load = table.load  # type: ignore[method-assign]
    await cache.reload()  # at start: nothing registered
    cache.forget()  # the window has passed
    assert await cache.matching("notification.queued") == []  # stale list, reload in background
    await asyncio.sleep(0)
    assert table.loads == 2  # ...which is now reading the table
    table.committed.append(NEW)  # another request registers and commits
    reloading: asyncio.Task[Any] = asyncio.create_task(cache.reload())
    await asyncio.sleep(0.01)
    table.hold.set()  # the old load finishes with the old rows
    await reloading
    assert await cache.matching("notification.queued") == [NEW]
    assert await cache.get(NEW.id) == NEW

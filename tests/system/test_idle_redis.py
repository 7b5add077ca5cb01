"""An idle Herald stays nearly silent on Redis.

Counted from outside with Redis's MONITOR (commands the clients sent; those a Lua script runs
inside Redis are left out), on the Redis of each stack, filtered to Herald's database. Before
the queue gauges were read only when Prometheus scrapes, an idle API server and worker sent
21.5 commands a second, 14.5 of them BullMQ's `getCounts` script (one round trip per queue,
every second); 9.5 after. The bound leaves room for a slow machine's timers to bunch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url

from herald.delivery.queues import (
    DELAYED_SCORE_SCALE,
    DIGESTS_QUEUE,
    OVERDUE_AFTER_MS,
    all_queue_names,
)
from tests.fixtures.herald import RunningHerald
from tests.fixtures.stacks import PG_URL, scratch_database

SETTLE = 3.0  # seconds for start-up's own commands to pass
WINDOW = 10.0  # seconds counted
BOUND = 14.0  # commands a second


async def client_commands(url: str, seconds: float) -> Counter[str]:
    """The commands clients sent to `url`'s database during `seconds`, by name."""
    db = int(parse_url(url).get("db", 0))
    counted: Counter[str] = Counter()
    watcher = aioredis.from_url(url, decode_responses=True)
    async with watcher, watcher.monitor() as monitor:

        async def read() -> None:
            async for command in monitor.listen():
                if command["db"] == db and command["client_type"] != "lua":
                    counted[command["command"].split(" ", 1)[0].upper()] += 1

        reading = asyncio.create_task(read())
        await asyncio.sleep(seconds)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    return counted


@pytest.fixture
async def own_database(stack: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """On PostgreSQL, a database of the test's own: the suite's shared one holds earlier tests'
    unfinished rows, which an idle Herald's reconciler rightly hands to the queues."""
    if "database_url" not in stack:
        yield {}
        return
    assert PG_URL is not None
    async with scratch_database(PG_URL, "herald_idle") as url:
        yield {"database_url": url}


async def test_an_idle_herald_sends_few_redis_commands(
    own_database: dict[str, Any], herald_factory: Any
) -> None:
    herald: RunningHerald = await herald_factory(**own_database)
    await asyncio.sleep(SETTLE)
    counted = await client_commands(herald.herald.redis_url, WINDOW)
    per_second = sum(counted.values()) / WINDOW
    assert per_second < BOUND, counted.most_common()
    # Nothing polls the queues' counts while nobody asks for them.
    assert counted["EVALSHA"] / WINDOW < 4, counted.most_common()


async def test_queue_counts_read_every_queue_in_one_round_trip(herald_factory: Any) -> None:
    """What the counts say per state, and `overdue` for a delayed job long past its due time,
    on real queues (the pipelined reading must keep each queue's and each state's place)."""
    herald: RunningHerald = await herald_factory(workers=False)
    queues = herald.herald.queues
    waiting = await queues.get("mail").add("probe", {}, {"jobId": f"probe-{uuid.uuid4().hex}"})
    late = await queues.get("mail-retry-1").add(
        "probe", {}, {"jobId": f"probe-{uuid.uuid4().hex}", "delay": 60_000}
    )
    due_long_ago = int(time.time() * 1000) - OVERDUE_AFTER_MS - 60_000
    await queues._client.zadd(
        queues.get("mail-retry-1").keys["delayed"], {late.id: due_long_ago * DELAYED_SCORE_SCALE}
    )
    try:
        counts = await queues.counts()
        assert counts["mail"]["waiting"] >= 1 and counts["mail"]["overdue"] == 0
        assert counts["mail-retry-1"]["delayed"] >= 1
        assert counts["mail-retry-1"]["overdue"] >= 1
        assert set(counts) == {*all_queue_names(herald.settings), DIGESTS_QUEUE}
    finally:
        await queues.get("mail").remove(waiting.id)
        await queues.get("mail-retry-1").remove(late.id)

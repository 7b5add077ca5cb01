"""What one Redis command costs the client: `python scripts/redis_command_cost.py [REDIS_URL]`.

CPU (`time.process_time`) per PUBLISH round trip through Herald's client
(`herald.core.redis.client`, whose connections write without `asyncio.wait_for`) and through
the same pool with redis-py's own connection class, on the default event loop and on uvloop:
the median of 15 alternated rounds of 500 commands each. The REDIS_URL (default
`redis://127.0.0.1:6379/15`) is only published to.

Timings are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
import uvloop

from herald.core.redis import client

ROUNDS, COMMANDS = 15, 500


async def per_command(url: str) -> dict[bool, float]:
    """Median CPU µs per command for each class, over rounds that alternate between them (this
    machine's speed drifts within seconds: alternating keeps that out of the comparison)."""
    clients = {}
    for plain in (True, False):
        r = client(url, max_connections=2)
        if plain:  # redis-py's own class: each write under asyncio.wait_for
            r.connection_pool.connection_class = aioredis.Connection
        await r.ping()
        clients[plain] = r
    spent: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for plain, r in clients.items():
            began = time.process_time()
            for _ in range(COMMANDS):
                await r.publish("herald:cost", "x")
            spent[plain].append((time.process_time() - began) / COMMANDS * 1e6)
    for r in clients.values():
        await r.aclose()
    return {plain: statistics.median(values) for plain, values in spent.items()}


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/15"
    loops: dict[str, Callable[[Coroutine[Any, Any, dict[bool, float]]], dict[bool, float]]] = {
        "asyncio": asyncio.run,
        "uvloop": uvloop.run,
    }
    for loop, run in loops.items():
        cost = run(per_command(url))
        print(
            f"{loop:8s} redis-py's connection {cost[True]:6.1f} µs CPU per command, "
            f"Herald's {cost[False]:6.1f}"
        )


if __name__ == "__main__":
    main()

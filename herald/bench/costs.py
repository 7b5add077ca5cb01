"""What a notification costs: CPU in each process, Redis commands and database transactions.

Read from outside the processes under test, before and after a run: CPU seconds from `/proc`,
Redis's own count of the commands it processed (`INFO stats`, which also counts the commands a
script runs), and PostgreSQL's count of committed and rolled-back transactions in the scratch
database (`pg_stat_database`). Everything the stack did during the run is divided by the
notifications it carried, background work (heartbeats, metrics) included, for Herald and the
peer alike.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from herald.bench.stack import BenchStack, Proc, plain_url

# PostgreSQL publishes a backend's statistics at most about once a second.
STATS_DELAY = 1.5

Counters = dict[str, float]


async def read(stack: BenchStack, procs: list[Proc]) -> Counters:
    counters: Counters = {f"{p.name}CpuSeconds": p.cpu_seconds for p in procs}
    client = aioredis.from_url(stack.redis_url)
    try:
        counters["redisCommands"] = float((await client.info("stats"))["total_commands_processed"])
    finally:
        await client.aclose()
    if stack.database_name and stack.server_database:
        import asyncpg

        conn = await asyncpg.connect(plain_url(stack.server_database))
        try:
            counters["dbTransactions"] = float(
                await conn.fetchval(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                    stack.database_name,
                )
            )
        finally:
            await conn.close()
    return counters


async def settled(stack: BenchStack, procs: list[Proc]) -> Counters:
    """The counters once the database has published what the run did."""
    if stack.database_name:
        await asyncio.sleep(STATS_DELAY)
    return await read(stack, procs)


def per_notification(before: Counters, after: Counters, notifications: int) -> dict[str, float]:
    """CPU in µs and commands or transactions per notification, for each counter."""
    if notifications <= 0:
        return {}
    out: dict[str, float] = {}
    for name, value in after.items():
        spent = (value - before[name]) / notifications
        if name.endswith("CpuSeconds"):
            out[name.removesuffix("CpuSeconds") + "CpuUsPerNotification"] = round(spent * 1e6)
        else:
            out[name + "PerNotification"] = round(spent, 1)
    return out

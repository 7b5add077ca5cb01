"""The faults. Each is made while the load runs and undone before it returns, so the next
scenario starts from a whole Herald; each returns one line saying what it did."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from herald.bench.stack import Proc
from herald.chaos.target import Target

TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@dataclass(frozen=True)
class Sizes:
    rate: float  # triggers a second
    load_seconds: float  # how long the load runs; the fault starts a quarter of the way in
    outage_seconds: float  # how long a killed part stays down
    drain_seconds: float  # the longest wait for what was accepted to arrive

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        return cls(10, 5, 1, 30) if quick else cls(50, 30, 10, 120)


def _alive(target: Target, prefix: str) -> Proc:
    assert target.stack is not None
    for proc in target.stack.procs:
        if proc.name.startswith(prefix) and proc.popen.poll() is None:
            return proc
    raise RuntimeError(f"no running {prefix} process")


def _next_name(target: Target, prefix: str) -> str:
    assert target.stack is not None
    return f"{prefix}{sum(p.name.startswith(prefix) for p in target.stack.procs) + 1}"


async def _sigkill(proc: Proc) -> None:
    proc.popen.kill()
    await asyncio.to_thread(proc.popen.wait)


async def kill_worker(target: Target, sizes: Sizes) -> str:
    """SIGKILL the worker while it drains (once the sink sees it sending), start another."""
    assert target.stack is not None and target.sink is not None
    worker = _alive(target, "worker")
    seen = target.sink.count
    deadline = time.monotonic() + sizes.load_seconds
    while target.sink.count < seen + 3 and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
        await asyncio.sleep(0.02)
    await _sigkill(worker)
    await asyncio.sleep(sizes.outage_seconds)
    await target.stack.worker(_next_name(target, "worker"))
    return f"SIGKILLed {worker.name} mid-drain, another started {sizes.outage_seconds:g} s later"


async def kill_api(target: Target, sizes: Sizes) -> str:
    """SIGKILL one API server; the load goes to the other; start it again."""
    assert target.stack is not None
    api = _alive(target, "api")
    url = f"http://127.0.0.1:{api.port}"
    await _sigkill(api)
    await asyncio.sleep(sizes.outage_seconds)
    again = await target.stack.api(_next_name(target, "api"))
    target.api_urls[target.api_urls.index(url)] = f"http://127.0.0.1:{again.port}"
    return f"SIGKILLed {api.name}, another started {sizes.outage_seconds:g} s later"


async def terminate_connections(target: Target, sizes: Sizes) -> str:
    """Terminate every connection Herald has to its PostgreSQL database, every 0.25 s."""
    assert target.database_url is not None
    admin = await asyncpg.connect(target.database_url.replace("+asyncpg", "", 1))
    terminated, rounds = 0, 0
    deadline = time.monotonic() + sizes.load_seconds / 2
    try:
        while time.monotonic() < deadline:
            terminated += int(await admin.fetchval(TERMINATE) or 0)
            rounds += 1
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
    return f"terminated {terminated} connections in {rounds} rounds, 0.25 s apart"


async def restart_redis(target: Target, sizes: Sizes) -> str:
    """Redis gone, then back empty: as a Redis without persistence comes back from a crash.
    The embedded one is SIGKILLed and started on its port with its append-only file removed;
    an external one (only when allowed) has every client cut and its database emptied."""
    embedded = target.stack.herald.embedded_redis if target.stack and target.stack.herald else None
    if embedded is not None and embedded.process is not None:
        embedded.process.kill()
        await asyncio.to_thread(embedded.process.wait)
        await asyncio.sleep(sizes.outage_seconds)
        for leftover in embedded.dir.glob("appendonly*"):
            leftover.unlink()
        await embedded.start()
        return f"SIGKILLed the embedded Redis, started it empty {sizes.outage_seconds:g} s later"
    assert target.redis_url is not None
    client = aioredis.from_url(target.redis_url)
    try:
        cut = await client.client_kill_filter(_type="normal", skipme=True)
        await client.flushdb()
    finally:
        await client.aclose()
    return f"cut {cut} Redis clients and emptied the database (an external Redis is not ours)"

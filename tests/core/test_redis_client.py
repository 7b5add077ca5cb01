"""Herald's Redis client: a command's write starts no task, a dead server still times out, a
command that finds every pooled connection busy waits for one (`WaitingConnectionPool`), and a
pipeline asks whether the server holds its scripts only until it has seen it hold them
(`ScriptsKnownPipeline`).

`herald.core.redis.UntaskedWriteConnection` sets the socket timeout aside while redis-py
writes a command (redis-py wraps each write in `asyncio.wait_for`, a task per command on
Python 3.11). These tests fail if redis-py changes how it applies that timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from herald.core.redis import EmbeddedRedis, UntaskedWriteConnection, WaitingConnectionPool, client
from tests.fixtures.waiting import eventually


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    own = EmbeddedRedis(tmp_path / "redis")
    await own.start()
    yield own
    await own.stop()


async def test_a_command_on_a_connected_client_starts_no_task(server: EmbeddedRedis) -> None:
    r = client(server.url, max_connections=2)
    try:
        await r.ping()  # connects (and greets the server) the way redis-py does
        started: list[Any] = []
        loop = asyncio.get_running_loop()

        def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            started.append(coro)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(counting)
        try:
            for n in range(20):
                await r.publish("herald:test", str(n))
                assert await r.ping()
        finally:
            loop.set_task_factory(None)
        assert started == []
        assert r.connection_pool.connection_class is UntaskedWriteConnection
    finally:
        await r.aclose()


async def test_a_server_that_stops_answering_still_times_out(server: EmbeddedRedis) -> None:
    r = client(server.url, max_connections=2, socket_timeout=0.3)
    admin = client(server.url, max_connections=1)
    try:
        assert await r.ping()
        await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        began = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            await r.ping()
        assert time.monotonic() - began < 2.5
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await r.aclose()
        await admin.aclose()


async def _clients(admin: aioredis.Redis, field: str, value: str) -> int:
    """How many clients of the server have `value` in CLIENT LIST's `field` (name, cmd)."""
    return sum(1 for c in await admin.client_list() if c.get(field) == value)


async def _blocked(admin: aioredis.Redis, count: int) -> bool:
    """Whether `count` clients are blocked in a BLPOP on the server."""
    return await _clients(admin, "cmd", "blpop") == count


async def test_commands_past_the_pools_size_wait_for_a_connection(server: EmbeddedRedis) -> None:
    r = client(server.url, max_connections=2, decode_responses=True, client_name="pool-test")
    admin = client(server.url, max_connections=1, decode_responses=True)
    try:
        # Ten commands that each hold a connection until their list gets an item.
        waits = [asyncio.ensure_future(r.blpop([f"list:{n}"], 10)) for n in range(10)]
        await eventually(lambda: _blocked(admin, 2))
        assert not any(w.done() for w in waits)
        for n in range(10):
            await admin.rpush(f"list:{n}", "item")
        assert [tuple(w) for w in await asyncio.gather(*waits)] == [
            (f"list:{n}", "item") for n in range(10)
        ]
        assert await _clients(admin, "name", "pool-test") == 2  # never more than its size
    finally:
        await r.aclose()
        await admin.aclose()


OneConnection = tuple[aioredis.Redis, aioredis.Redis, "asyncio.Future[Any]"]


@pytest.fixture
async def one_connection(server: EmbeddedRedis) -> AsyncIterator[OneConnection]:
    """A client whose pool has one connection, held by a BLPOP on "held" until it gets an item
    (the BLPOP's future), and an admin client to give it one."""
    pool = WaitingConnectionPool.from_url(server.url, max_connections=1, timeout=2.0)
    r = aioredis.Redis.from_pool(pool)
    admin = client(server.url, max_connections=1, decode_responses=True)
    held = asyncio.ensure_future(r.blpop(["held"], 30))
    await eventually(lambda: _blocked(admin, 1))
    yield r, admin, held
    held.cancel()
    await r.aclose()
    await admin.aclose()


async def test_a_command_that_finds_no_connection_in_time_fails_and_others_go_on(
    one_connection: OneConnection,
) -> None:
    r, admin, _ = one_connection
    with pytest.raises(redis.exceptions.ConnectionError, match="No connection available"):
        await r.ping()
    gone = asyncio.ensure_future(r.ping())  # waits, then its caller gives up
    stays = asyncio.ensure_future(r.ping())
    await asyncio.sleep(0.05)
    gone.cancel()
    await admin.rpush("held", "x")  # the BLPOP answers and gives its connection back
    assert await stays is True  # woken by the release, though the first waiter left
    assert gone.cancelled()


async def test_waiting_commands_get_their_connection_first_come_first(
    one_connection: OneConnection,
) -> None:
    r, admin, held = one_connection
    served: list[str] = []

    async def ping(name: str) -> None:
        await r.ping()
        served.append(name)

    waiting = [asyncio.ensure_future(ping(f"waited {n}")) for n in range(5)]
    await asyncio.sleep(0.05)
    await admin.rpush("held", "x")
    await held  # its connection is back: the first waiter is woken, not served yet
    later = [asyncio.ensure_future(ping(f"came later {n}")) for n in range(5)]
    await asyncio.gather(*waiting, *later)
    assert served == [f"waited {n}" for n in range(5)] + [f"came later {n}" for n in range(5)]


ADD = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def _script_checks(admin: aioredis.Redis) -> int:
    """How many SCRIPT commands (EXISTS, LOAD) the server has answered."""
    stats = await admin.info("commandstats")
    # Redis 7 counts each subcommand apart, earlier versions all of them as "script".
    counted = [v for k, v in stats.items() if k.startswith("cmdstat_script")]
    return sum(int(v["calls"]) for v in counted)


@pytest.mark.parametrize("transaction", [True, False])
async def test_pipelines_ask_whether_the_server_holds_a_script_once(
    server: EmbeddedRedis, transaction: bool
) -> None:
    r, admin = client(server.url), client(server.url)
    add = r.register_script(ADD)
    try:
        checks = []
        for run in range(3):
            async with r.pipeline(transaction=transaction) as pipe:
                await add(keys=["n"], args=[1], client=pipe)
                await add(keys=["n"], args=[2], client=pipe)
                assert await pipe.execute() == [3 * run + 1, 3 * run + 3]
            checks.append(await _script_checks(admin))
        assert checks[0] > 0  # the first run checked (and loaded) the script
        assert checks[2] == checks[0]
    finally:
        await r.aclose()
        await admin.aclose()


@pytest.mark.parametrize("transaction", [True, False])
async def test_a_pipeline_whose_scripts_the_server_lost_runs_each_command_once(
    server: EmbeddedRedis, transaction: bool
) -> None:
    r = client(server.url)
    add = r.register_script(ADD)
    try:
        async with r.pipeline(transaction=transaction) as pipe:
            await add(keys=["n"], args=[1], client=pipe)
            assert await pipe.execute() == [1]
        await r.script_flush()  # as a restarted server would have lost them
        async with r.pipeline(transaction=transaction) as pipe:
            await add(keys=["n"], args=[10], client=pipe)
            pipe.incr("plain")
            await add(keys=["n"], args=[100], client=pipe)
            assert await pipe.execute() == [11, 1, 111]
        assert int(await r.get("plain")) == 1
        async with r.pipeline(transaction=transaction) as pipe:  # and it says so as before
            await add(keys=["n"], args=[1], client=pipe)
            pipe.lpush("n", 1)  # wrong type: the pipeline raises its error
            with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
                await pipe.execute()
    finally:
        await r.aclose()

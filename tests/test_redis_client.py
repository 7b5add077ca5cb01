"""Herald's Redis client: a command's write starts no task, and a dead server still times out.

`herald.core.redis.UntaskedWriteConnection` sets the socket timeout aside while redis-py
writes a command (redis-py wraps each write in `asyncio.wait_for`, a task per command on
Python 3.11). These tests fail if redis-py changes how it applies that timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions

from herald.core.redis import EmbeddedRedis, UntaskedWriteConnection, client


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

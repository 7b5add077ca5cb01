"""The Socket.IO server's open sockets and its Redis listener, which python-socketio has no
public API for: the count and the closing read python-engineio's map of sessions (`eio.sockets`),
and the listener is the manager's task (`manager.thread`), started lazily by the library on the
first connection unless told it is started (`manager_initialized`). tests/realtime/test_layer.py
checks these attributes on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
import socketio

log = logging.getLogger(__name__)


def socket_count(sio: socketio.AsyncServer) -> int:
    """Engine.IO sessions open on this server (authenticated or not)."""
    return len(sio.eio.sockets)


async def close_sockets(sio: socketio.AsyncServer, timeout: float) -> int:
    """End every Engine.IO session at once (the disconnect handlers run, a pending long poll is
    answered), waiting at most `timeout` seconds; how many there were."""
    eio = sio.eio
    sessions = list(eio.sockets.values())

    async def end(session: Any) -> None:
        await session.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
        session.end_long_poll()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(end(s) for s in sessions), return_exceptions=True), timeout
        )
    return len(sessions)


async def start_listener(
    sio: socketio.AsyncServer, redis: aioredis.Redis, timeout: float = 5.0
) -> None:
    """Subscribe to the Socket.IO channel before taking connections. Redis pub/sub keeps
    nothing for late subscribers: an emit published before we listen would be lost."""
    channel = sio.manager.channel

    async def subscribers() -> int:
        return int(dict(await redis.pubsub_numsub(channel)).get(channel, 0))

    sio.manager_initialized = True  # python-socketio would otherwise do it lazily
    try:
        before = await subscribers()
        sio.manager.initialize()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await subscribers() <= before and loop.time() < deadline:  # noqa: ASYNC110 - polling Redis
            await asyncio.sleep(0.01)
    except Exception as exc:  # Redis is down: serve anyway; the listener keeps retrying
        log.warning("realtime.listener.deferred", extra={"error": repr(exc)})
        if not getattr(sio.manager, "thread", None):
            sio.manager.initialize()


async def stop(sio: socketio.AsyncServer) -> None:
    """Stop the server, its Redis listener with it (which would otherwise outlive it)."""
    listener = getattr(sio.manager, "thread", None)
    if isinstance(listener, asyncio.Task):
        listener.cancel()
    await sio.shutdown()

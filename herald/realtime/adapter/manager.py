"""python-socketio's Redis manager, resubscribing at once after Redis comes back, and telling
the server when a connection is confirmed to its client.

The library's manager retries a lost subscription after 1, 2, 4, ... up to 60 s. While a server
is not subscribed, every emit a worker publishes for its sockets is lost, so after a 30 s Redis
outage in-app delivery stayed dark for up to half a minute more. This subclass retries every
half second instead (one connection attempt each: no busy loop while Redis is away). It
replaces the library's private `_redis_listen_with_retries`, the one generator its `_listen`
reads; tests/system/test_faults.py fails if that changes under it.

`socket_emit` writes the library's pub/sub message for an emit to one socket, up to the socket's
id, so that a Redis script can publish it to each socket a notification goes to in the step
that picks them (realtime.presence); tests/realtime/test_layer.py fails if the library's message
changes.

`on_connected` runs right after the library has sent a namespace's CONNECT packet (its
`_handle_connect` sends it, then calls the manager's `connect`). A socket that sent its token
with the connect is authenticated from there: anything emitted before that packet would reach
the client ahead of its `connect` event, and waiting for it by polling `is_connected` cost a
timer every 5 ms per connecting socket. If python-socketio stopped calling `connect` there, no
socket would authenticate from its connect payload: tests/realtime/test_layer.py fails then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import socketio

from herald.realtime.adapter.rooms import LeanRooms

log = logging.getLogger(__name__)
RESUBSCRIBE_SECONDS = 0.5


def socket_emit(manager: socketio.AsyncRedisManager, event: str, data: Any) -> tuple[str, str]:
    """The channel, and the message up to its room, that `manager.emit(event, data, to=sid)`
    publishes: the message for socket `sid` is that text + its JSON string + "}"."""
    message = {
        "method": "emit",
        "event": event,
        "data": [data],
        "binary": False,
        "namespace": "/",
        "skip_sid": None,
        "callback": None,
        "host_id": manager.host_id,
    }
    return manager.channel, manager.json.dumps(message)[:-1] + ', "room": '


class PromptRedisManager(LeanRooms, socketio.AsyncRedisManager):
    # (sid, namespace) of a connection its client now knows is connected
    on_connected: Callable[[str, str], Awaitable[None]] | None = None

    async def connect(self, sid: str, namespace: str) -> Any:
        sid = await super().connect(sid, namespace)
        if self.on_connected is not None:
            await self.on_connected(sid, namespace)
        return sid

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:  # the connection is gone: subscribe again shortly
                if subscribed:
                    log.warning("realtime.pubsub.lost", extra={"error": repr(exc)})
                subscribed = False
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

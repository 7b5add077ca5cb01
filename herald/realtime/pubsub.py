"""python-socketio's Redis manager, resubscribing at once after Redis comes back.

The library's manager retries a lost subscription after 1, 2, 4, ... up to 60 s. While a server
is not subscribed, every emit a worker publishes for its sockets is lost, so after a 30 s Redis
outage in-app delivery stayed dark for up to half a minute more. This subclass retries every
half second instead (one connection attempt each: no busy loop while Redis is away). It
replaces the library's private `_redis_listen_with_retries`, the one generator its `_listen`
reads; tests/test_faults.py fails if that changes under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio

log = logging.getLogger(__name__)
RESUBSCRIBE_SECONDS = 0.5


class PromptRedisManager(socketio.AsyncRedisManager):
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

"""Acknowledgements of in-app notifications, heard by the worker whose attempt waits for them.

An emit travels through Redis pub/sub, which keeps nothing: while an API server's subscription
is reconnecting, an emit for its sockets is dropped. So an in-app attempt counts as delivered
only when a client says it arrived (`notification:ack`). The API server that takes the ack
publishes the ids on one Redis channel; each worker process subscribes once and wakes the
attempts waiting for those ids. An ack heard by nobody (the worker's own subscription was
down) costs only a retry, which finds the row already delivered by the ack and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import NamedTuple

import redis.asyncio as aioredis

from herald.core.redis import client, pubsub_channel

log = logging.getLogger(__name__)
RESUBSCRIBE_SECONDS = 0.5


def ack_channel(redis_url: str) -> str:
    return pubsub_channel("herald:acks", redis_url)


class Ack(NamedTuple):
    """Who acknowledged: the socket, and the transport it really uses (polling or websocket)."""

    sid: str
    transport: str


class Acked(NamedTuple):
    """What one socket acknowledged."""

    ids: list[int]
    sid: str
    transport: str


async def publish_acks(redis: aioredis.Redis, redis_url: str, acks: Sequence[Acked]) -> None:
    """One message for a batch of sockets' acks (a list of `{ids, sid, transport}`)."""
    if acks:
        message = [ack._asdict() for ack in acks]
        await redis.publish(ack_channel(redis_url), json.dumps(message))


class AckListener:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis = client(redis_url, max_connections=2, decode_responses=True)
        self._waiting: dict[int, asyncio.Future[Ack]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="inapp-acks")

    def expect(self, notification_id: int) -> None:
        """Start listening for this id's ack: before the emit, so a fast ack is not missed."""
        self._waiting[notification_id] = asyncio.get_running_loop().create_future()

    async def wait(self, notification_id: int, timeout: float) -> Ack | None:
        """Who acknowledged it, or None if no ack came within `timeout`."""
        try:
            return await asyncio.wait_for(self._waiting[notification_id], timeout)
        except TimeoutError:
            return None

    def forget(self, notification_id: int) -> None:
        self._waiting.pop(notification_id, None)

    def _heard(self, payload: str) -> None:
        message = json.loads(payload)
        # A server of an earlier version publishes one socket's acks as a lone object.
        for acked in message if isinstance(message, list) else [message]:
            ack = Ack(acked["sid"], acked.get("transport", "websocket"))
            for notification_id in acked["ids"]:
                future = self._waiting.get(notification_id)
                if future is not None and not future.done():
                    future.set_result(ack)

    async def _listen(self) -> None:
        subscribed = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(ack_channel(self.redis_url))
                subscribed = True
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._heard(message["data"])
            except Exception as exc:  # Redis is away: subscribe again shortly
                if subscribed:
                    log.warning("inapp.acks.subscription_lost", extra={"error": repr(exc)})
                subscribed = False
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()

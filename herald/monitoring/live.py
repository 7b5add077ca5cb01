"""The live view: the `/admin` Socket.IO namespace, for the operations dashboard.

Only a client presenting the admin token in its connect payload (`{"token": ...}`) gets in;
anyone else is refused at connect and receives nothing. Connected clients get:

- `telemetry:stage`: each stage event from any process, relayed from the Redis channel the
  stage recorders publish on. This server listens on that channel only while it has admin
  clients, and relays at most `MAX_STAGES_PER_SECOND` (the rest are counted as skipped and
  the count is in the next aggregate), so a busy cluster cannot flood a browser;
- `telemetry:aggregate`: the cluster's last second, from the aggregator.

Emits here use `ignore_queue=True`: they go to this server's own admin clients only. Each API
server relays to its own, so nobody gets an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
import socketio

from herald.telemetry.stages import LIVE_CHANNEL

log = logging.getLogger(__name__)

ADMIN_NAMESPACE = "/admin"
MAX_STAGES_PER_SECOND = 100


class LiveView:
    def __init__(self, sio: socketio.AsyncServer, admin_token: str, redis_url: str) -> None:
        self.sio = sio
        self.admin_token = admin_token
        self.redis_url = redis_url
        self.watchers: set[str] = set()
        self.skipped = 0  # stage events not relayed since the last aggregate
        self._listener: asyncio.Task[None] | None = None
        self._budget_second = 0
        self._budget = MAX_STAGES_PER_SECOND
        self._install()

    @property
    def watching(self) -> bool:
        return bool(self.watchers)

    def _install(self) -> None:
        sio = self.sio

        @sio.on("connect", namespace=ADMIN_NAMESPACE)
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            token = auth.get("token") if isinstance(auth, dict) else None
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), self.admin_token.encode()
            ):
                raise socketio.exceptions.ConnectionRefusedError("admin token required")
            self.watchers.add(sid)
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._relay(), name="telemetry-live")

        @sio.on("disconnect", namespace=ADMIN_NAMESPACE)
        async def disconnect(sid: str, *_: Any) -> None:
            self.watchers.discard(sid)

    async def send_aggregate(self, aggregate: dict[str, Any]) -> None:
        self.skipped = 0
        await self.sio.emit(
            "telemetry:aggregate", aggregate, namespace=ADMIN_NAMESPACE, ignore_queue=True
        )

    async def _relay(self) -> None:
        """Forward stage events to this server's admin clients while there are any."""
        client = aioredis.from_url(self.redis_url, decode_responses=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(LIVE_CHANNEL)
            while self.watchers:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                for event in json.loads(message["data"]):
                    if self._spend():
                        await self.sio.emit(
                            "telemetry:stage", event, namespace=ADMIN_NAMESPACE, ignore_queue=True
                        )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis away: the next admin connect starts a new relay
            log.warning("telemetry.live.relay_error", extra={"error": repr(exc)})
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    def _spend(self) -> bool:
        second = int(time.monotonic())
        if second != self._budget_second:
            self._budget_second, self._budget = second, MAX_STAGES_PER_SECOND
        if self._budget <= 0:
            self.skipped += 1
            return False
        self._budget -= 1
        return True

    async def close(self) -> None:
        self.watchers.clear()  # the relay also stops by itself within a second of this
        if self._listener:
            self._listener.cancel()
            await asyncio.wait({self._listener}, timeout=3)

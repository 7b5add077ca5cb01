"""The monitoring of one Herald process: its aggregator's one-second loop and, on an API
server, the live view and the count of open sockets for Prometheus."""

from __future__ import annotations

import asyncio
import contextlib

import socketio

from herald.core.config import Settings
from herald.delivery.queues import Queues
from herald.monitoring.aggregator import Aggregator
from herald.monitoring.live import LiveView
from herald.realtime.adapter.server import socket_count
from herald.realtime.presence import Presence
from herald.telemetry.service import Telemetry

STOP_TIMEOUT = 3.0  # seconds; the loop also checks a flag at least once a second


class Monitoring:
    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        queues: Queues,
        presence: Presence,
        sio: socketio.AsyncServer | None,
        *,
        admin_token: str,
        redis_url: str,
        api: bool,
        workers: bool,
    ) -> None:
        self.live: LiveView | None = None
        if sio is not None:
            # The count of open sockets is read when Prometheus scrapes.
            telemetry.metrics.count_connections(lambda: socket_count(sio))
            self.live = LiveView(sio, admin_token, redis_url)
        self.aggregator = Aggregator(
            settings, telemetry, queues, presence, sio, self.live, api=api, workers=workers
        )
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self.aggregator.run_forever(), name="telemetry")

    async def close(self) -> None:
        if self._loop:
            self.aggregator.stopped = True
            self._loop.cancel()
            await asyncio.wait({self._loop}, timeout=STOP_TIMEOUT)
        if self.live:
            await self.live.close()
        with contextlib.suppress(Exception):
            await self.aggregator.withdraw()

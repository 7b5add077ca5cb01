"""The telemetry of one Herald process: stage recorder, metrics, aggregator and live view."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import TYPE_CHECKING

from herald.core.config import Settings
from herald.core.redis import client as redis_client
from herald.delivery.ladder import ladder
from herald.notifications.models import Channel
from herald.telemetry.metrics import Metrics, Routes
from herald.telemetry.stages import StageRecorder

if TYPE_CHECKING:
    import socketio

    from herald.delivery.queues import Queues
    from herald.realtime.presence import Presence
    from herald.telemetry.aggregator import Aggregator
    from herald.telemetry.live import LiveView

log = logging.getLogger(__name__)

STOP_TIMEOUT = 3.0  # seconds; the loop also checks a flag at least once a second


def routes(settings: Settings) -> Routes:
    """Where each tier's escalating attempts go: the next tier, or (a permanent error) the DLQ."""
    found: Routes = {}
    for channel in Channel:
        tiers = ladder(settings, channel)
        for tier, after in itertools.pairwise(tiers):
            found[(tier.queue, "escalated")] = (channel.value, after.queue)
            found[(tier.queue, "dead-lettered")] = (channel.value, tiers[-1].queue)
    return found


class Telemetry:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.server_id = settings.effective_server_id
        # Its own client with short timeouts: a slow Redis must not hold telemetry writes (and
        # the memory behind them) for long; the recorder drops events for a while instead.
        self.redis = redis_client(
            redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        self.metrics = Metrics(routes(settings))
        self.stages = StageRecorder(
            self.redis,
            self.server_id,
            ttl_seconds=settings.telemetry_ttl,
            sample_rate=settings.telemetry_sample_rate,
            on_write=self.metrics.stages_written,
        )
        self.live: LiveView | None = None
        self.aggregator: Aggregator | None = None
        self._loop: asyncio.Task[None] | None = None

    def attach(
        self,
        sio: socketio.AsyncServer | None,
        queues: Queues,
        presence: Presence,
        *,
        admin_token: str,
        redis_url: str,
        api: bool,
        workers: bool,
    ) -> None:
        """Wire up what needs the rest of the process, built after telemetry: socket metrics,
        the live view (both on an API server), the aggregator's loop."""
        from herald.realtime.adapter.server import socket_count
        from herald.telemetry.aggregator import Aggregator
        from herald.telemetry.live import LiveView

        if sio is not None:
            # The socket handlers report their events themselves (realtime.server); the count
            # of open sockets is read when Prometheus scrapes.
            self.metrics.count_connections(lambda: socket_count(sio))
            self.live = LiveView(sio, admin_token, redis_url)
        self.aggregator = Aggregator(
            self.settings, self, queues, presence, sio, api=api, workers=workers
        )

    def start(self) -> None:
        if self.aggregator is not None:
            self._loop = asyncio.create_task(self.aggregator.run_forever(), name="telemetry")

    async def close(self) -> None:
        if self._loop and self.aggregator:
            self.aggregator.stopped = True
            self._loop.cancel()
            await asyncio.wait({self._loop}, timeout=STOP_TIMEOUT)
        if self.live:
            await self.live.close()
        with contextlib.suppress(Exception):
            if self.aggregator:
                await self.aggregator.withdraw()
            await self.stages.flush()
        await self.redis.aclose()

"""The telemetry of one Herald process: the stage recorder and the metrics, which the rest of
Herald reports to (herald.monitoring reads them back: the cluster's summary, the alerts, the
dashboard's live view)."""

from __future__ import annotations

import contextlib

from herald.core.config import Settings
from herald.core.redis import client as redis_client
from herald.telemetry.metrics import Metrics, Routes
from herald.telemetry.stages import StageRecorder


class Telemetry:
    def __init__(self, settings: Settings, redis_url: str, routes: Routes) -> None:
        """`routes`: where each queue's escalations go, for their metrics (the retry ladder's
        `escalation_routes`)."""
        self.settings = settings
        self.server_id = settings.effective_server_id
        # Its own client with short timeouts: a slow Redis must not hold telemetry writes (and
        # the memory behind them) for long; the recorder drops events for a while instead.
        self.redis = redis_client(
            redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        self.metrics = Metrics(routes)
        self.stages = StageRecorder(
            self.redis,
            self.server_id,
            ttl_seconds=settings.telemetry_ttl,
            sample_rate=settings.telemetry_sample_rate,
            on_write=self.metrics.stages_written,
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stages.flush()
        await self.redis.aclose()

"""Stage events: the steps one request (and the notifications it made) went through.

A stage event says which step happened (`load_balancer`, `server`, `database`, `queue`,
`worker`, `channel`, `ack`), when (epoch milliseconds), where (component and server id), to which
notification, and how it went (`detail`). Events are appended to a Redis list per telemetry id
that expires after `ttl_seconds`, so any process (API server or worker) can append and any API
server can read the whole timeline, and they are published on one Redis channel for the live
view.

Recording never slows the caller down: `emit` only appends to a buffer, and one background
task writes whatever has piled up in one round trip (one script: RPUSH + EXPIRE per id, one
PUBLISH per batch). If Redis is unreachable, events are dropped (and counted) for a few seconds
rather than queued without bound: telemetry must never take Herald down with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

STAGES = ("load_balancer", "server", "database", "queue", "worker", "channel", "ack")
KEY_PREFIX = "herald:telemetry:t:"
LIVE_CHANNEL = "herald:telemetry:stages"
MAX_BUFFERED = 10_000  # events waiting for Redis; beyond this they are dropped
MAX_BATCH = 500
# Seconds the writer waits for more events before writing. The live view is read by people, for
# whom 50 ms is immediate; with 5 ms, at 100 notifications/s each process wrote almost once per
# notification (2.7 script runs per notification, Redis's most frequent command after BullMQ's).
BATCH_WINDOW = 0.05
PAUSE_AFTER_FAILURE = 5.0  # seconds without trying Redis after a failed write


# ARGV: ttl, channel, key prefix, then per id: the id, how many events, the events.
APPEND = """
local ttl, channel, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local all = {}
local i = 4
while i <= #ARGV do
  local key, n = prefix .. ARGV[i], tonumber(ARGV[i + 1])
  redis.call('RPUSH', key, unpack(ARGV, i + 2, i + 1 + n))
  redis.call('EXPIRE', key, ttl)
  for j = i + 2, i + 1 + n do all[#all + 1] = ARGV[j] end
  i = i + 2 + n
end
redis.call('PUBLISH', channel, '[' .. table.concat(all, ',') .. ']')
return #all
"""


def now_ms() -> float:
    return round(time.time() * 1000, 3)


@dataclass(frozen=True, slots=True)
class StageEvent:
    telemetry_id: str
    stage: str
    component: str
    server_id: str
    timestamp: float = field(default_factory=now_ms)  # epoch milliseconds
    channel: str | None = None
    notification_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "telemetryId": self.telemetry_id,
            "stage": self.stage,
            "timestamp": self.timestamp,
            "component": self.component,
            "serverId": self.server_id,
            "channel": self.channel,
            "notificationId": self.notification_id,
            "detail": dict(self.detail),
        }


class Traced(Protocol):
    """What a notification's stage is about: a notification row, or a job's reference to one."""

    @property
    def telemetry_id(self) -> str | None: ...

    @property
    def id(self) -> int: ...

    @property
    def channel(self) -> Any: ...  # the channel, or its name


class StageRecorder:
    def __init__(
        self,
        redis: aioredis.Redis,
        server_id: str,
        *,
        ttl_seconds: int,
        sample_rate: float = 1.0,
        on_write: Callable[[int, int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.server_id = server_id
        self.ttl_seconds = ttl_seconds
        self.sample_rate = sample_rate
        # Told (written, dropped) after each batch: the metrics count both.
        self.on_write = on_write
        self._buffer: list[StageEvent] = []
        self._writer: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._append = redis.register_script(APPEND)

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0 and self.sample_rate > 0

    def sampled(self, telemetry_id: str | None) -> bool:
        """Whether this id's timeline is kept. Decided from the id alone, so every process
        (API server, worker) makes the same choice without asking anyone."""
        if not telemetry_id or not self.enabled:
            return False
        if self.sample_rate >= 1:
            return True
        return zlib.crc32(telemetry_id.encode()) % 10_000 < self.sample_rate * 10_000

    def emit(self, *events: StageEvent) -> None:
        """Queue events for the background writer; never blocks, never raises."""
        kept = [e for e in events if self.sampled(e.telemetry_id)]
        if not kept:
            return
        if len(self._buffer) + len(kept) > MAX_BUFFERED or time.monotonic() < self._paused_until:
            self._report(0, len(kept))
            return
        self._buffer.extend(kept)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    def event(self, telemetry_id: str | None, stage: str, component: str, **fields: Any) -> None:
        """Shorthand for `emit(StageEvent(...))` from this process; no-op without an id."""
        if telemetry_id:
            self.emit(StageEvent(telemetry_id, stage, component, self.server_id, **fields))

    def notification(
        self,
        n: Traced,
        stage: str,
        component: str | None = None,
        *,
        timestamp: float | None = None,
        **detail: Any,
    ) -> None:
        """A stage of one notification's delivery (the one way delivery, the inbox and the
        outbox report one): `component` defaults to the stage's name, `timestamp` to now,
        `detail` is the stage's own. No-op for a notification without a telemetry id."""
        if not n.telemetry_id:
            return
        channel = getattr(n.channel, "value", n.channel)
        self.emit(
            StageEvent(
                n.telemetry_id,
                stage,
                component or stage,
                self.server_id,
                timestamp=now_ms() if timestamp is None else timestamp,
                channel=channel,
                notification_id=n.id,
                detail=detail,
            )
        )

    async def _drain(self) -> None:
        try:
            # At most one write per BATCH_WINDOW: under load, many events share a round trip.
            while True:
                await asyncio.sleep(BATCH_WINDOW)
                if not self._buffer:
                    break
                batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
                await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: list[StageEvent]) -> None:
        # Each event is encoded once, and the whole batch is one command: a script appends each
        # id's events, renews its expiry and publishes the batch, so Python parses one reply.
        by_id: dict[str, list[str]] = {}
        for event in batch:
            encoded = json.dumps(event.to_json(), separators=(",", ":"))
            by_id.setdefault(event.telemetry_id, []).append(encoded)
        args: list[str | int] = [self.ttl_seconds, LIVE_CHANNEL, KEY_PREFIX]
        for telemetry_id, encoded_events in by_id.items():
            args += [telemetry_id, len(encoded_events), *encoded_events]
        try:
            await self._append(args=args)
        except Exception as exc:
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
            log.warning("telemetry.stages.write_failed", extra={"error": repr(exc)})
            self._report(0, len(batch))
            return
        self._report(len(batch), 0)

    def _report(self, written: int, dropped: int) -> None:
        if self.on_write:
            self.on_write(written, dropped)

    async def flush(self) -> None:
        """Wait until everything emitted so far is written (or dropped)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def timeline(self, telemetry_id: str) -> list[dict[str, Any]]:
        """Every stage event of one telemetry id, oldest first."""
        raw = await self.redis.lrange(KEY_PREFIX + telemetry_id, 0, -1)
        events = [json.loads(item) for item in raw]
        events.sort(key=lambda e: (e["timestamp"], STAGES.index(e["stage"])))
        return events

"""The one-second loop: share this process's window, and (API servers) stream the cluster's.

Workers run in their own processes, so no single process sees every component. Each process,
whatever its role, writes a small snapshot of its window to Redis once a second (its last
finished second and its last minute, per component; a few kilobytes, expiring after a few
seconds). Any API server can then merge the snapshots of every live process: that is the JSON
summary (`GET /api/ops/metrics`) and the `telemetry:aggregate` event the dashboard gets every
second. Prometheus, for its part, scrapes each process's own `/metrics` (workers: `herald worker
--metrics-port`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from herald.monitoring import sections
from herald.realtime.adapter.server import socket_count
from herald.telemetry.window import Bin, merged

if TYPE_CHECKING:
    import socketio
    from redis.asyncio import Redis

    from herald.core.config import Settings
    from herald.delivery.queues import Queues
    from herald.monitoring.live import LiveView
    from herald.realtime.presence import Presence
    from herald.telemetry.service import Telemetry

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "herald:telemetry:process:"
PROCESSES = "herald:telemetry:processes"  # sorted set: process -> time of its last snapshot
SNAPSHOT_TTL = 5  # seconds: a process that stopped publishing drops out of the aggregate
MINUTE = 60


def _bins_json(bins: dict[str, Bin]) -> dict[str, Any]:
    return {component: b.to_json() for component, b in bins.items()}


def _bins_from(data: dict[str, Any]) -> dict[str, Bin]:
    return {component: Bin.from_json(b) for component, b in data.items()}


async def live_snapshots(
    redis: Redis, now: float, *, exclude: str | None = None
) -> list[dict[str, Any]]:
    """The latest snapshot of every process that published in the last few seconds: every
    live API server and worker of the cluster announces itself this way."""
    names = await redis.zrangebyscore(PROCESSES, now - SNAPSHOT_TTL, "+inf")
    others = [str(n) for n in names if n != exclude]
    raw = await redis.mget([SNAPSHOT_PREFIX + n for n in others]) if others else []
    return [json.loads(r) for r in raw if r]


class Aggregator:
    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        queues: Queues,
        presence: Presence,
        sio: socketio.AsyncServer | None,
        live: LiveView | None,
        *,
        api: bool,
        workers: bool,
    ) -> None:
        self.settings = settings
        self.live = live  # an API server's live view, which gets the aggregate each second
        self.telemetry = telemetry
        self.queues = queues
        self.presence = presence
        self.sio = sio
        self.api, self.workers = api, workers
        # Unique per Herald, even for several in one process (the tests run some side by side).
        self.process = f"{settings.effective_server_id}#{os.getpid()}#{id(self):x}"
        # Checked each turn as well as cancelling the task: a cancellation that arrives while a
        # Redis call is in flight can be swallowed by the client library.
        self.stopped = False

    # --- every process ----------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        window = self.telemetry.metrics.window
        second = int(now) - 1
        return {
            "process": self.process,
            "serverId": self.settings.effective_server_id,
            "pid": os.getpid(),
            "roles": {"api": self.api, "workers": self.workers},
            "second": second,
            "lastSecond": _bins_json(window.second(second)),
            "minute": _bins_json(window.last(MINUTE, now)),
            "covered": window.covered(MINUTE, now),
            "updatedAt": now,
        }

    async def publish(self, now: float) -> None:
        pipe = self.telemetry.redis.pipeline(transaction=False)
        pipe.set(SNAPSHOT_PREFIX + self.process, json.dumps(self.snapshot(now)), ex=SNAPSHOT_TTL)
        pipe.zadd(PROCESSES, {self.process: now})
        pipe.zremrangebyscore(PROCESSES, "-inf", now - 2 * SNAPSHOT_TTL)
        await pipe.execute()

    async def withdraw(self) -> None:
        pipe = self.telemetry.redis.pipeline(transaction=False)
        pipe.delete(SNAPSHOT_PREFIX + self.process)
        pipe.zrem(PROCESSES, self.process)
        await pipe.execute()

    async def run_forever(self) -> None:
        while not self.stopped:
            # Just after the second turns, so the second just finished is complete everywhere.
            await asyncio.sleep(1.05 - time.time() % 1)
            try:
                await self.publish(time.time())
                # The queue gauges are read when Prometheus scrapes (monitoring/endpoints.py):
                # refreshing them here cost an idle API server a round trip per queue a second.
                if self.api:
                    live = self.live
                    if live is not None and live.watching:
                        # Later in the second, once the other processes have published too.
                        await asyncio.sleep(max(0.0, 0.4 - time.time() % 1))
                        await live.send_aggregate(await self.aggregate(time.time()))
            except Exception as exc:  # Redis away: telemetry resumes when it is back
                log.warning("telemetry.aggregate.error", extra={"error": repr(exc)})

    # --- API servers: the cluster's view ------------------------------------------------------
    async def snapshots(self, now: float, *, current: bool) -> list[dict[str, Any]]:
        """The latest snapshot of every live process. This one's is made fresh, and with
        `current` it includes the second in progress (the summary wants the latest)."""
        found = await live_snapshots(self.telemetry.redis, now, exclude=self.process)
        return [self.snapshot(now + 1 if current else now), *found]

    async def aggregate(self, now: float) -> dict[str, Any]:
        """The last finished second across the cluster: what the live chart plots."""
        second = int(now) - 1
        snapshots = await self.snapshots(now, current=False)
        fresh = [_bins_from(s["lastSecond"]) for s in snapshots if s["second"] == second]
        bins, _ = sections.split(merged(fresh))
        components = {c: b.summary(1.0) for c, b in sorted(bins.items())}
        return {
            "second": second,
            "at": datetime.fromtimestamp(second + 1, UTC).isoformat(),
            "components": components,
            "processes": len(snapshots),
            **(await self._cluster_state()),
            "stageEventsSkipped": self.live.skipped if self.live else 0,
        }

    async def summary(self, now: float) -> dict[str, Any]:
        """The last minute across the cluster: the JSON summary."""
        snapshots = await self.snapshots(now, current=True)
        state = await self._cluster_state()
        return {
            "generatedAt": datetime.fromtimestamp(now, UTC).isoformat(),
            **sections.minute(self.settings, snapshots, state["queues"]),
            "processes": [
                {
                    "process": s["process"],
                    "serverId": s["serverId"],
                    "roles": s["roles"],
                    "updatedAt": datetime.fromtimestamp(s["updatedAt"], UTC).isoformat(),
                }
                for s in snapshots
            ],
            **state,
        }

    async def _cluster_state(self) -> dict[str, Any]:
        counts = await self.queues.counts()
        servers = await self.presence.servers()
        online = await self.presence.online_users()
        return {
            "queues": counts,
            "queueDepth": {q: s["waiting"] + s["active"] + s["delayed"] for q, s in counts.items()},
            "connections": {
                "servers": [
                    {
                        "serverId": s.server_id,
                        "alive": s.alive,
                        "sockets": s.sockets,
                        "users": s.users,
                    }
                    for s in servers
                ],
                "sockets": sum(len(s) for s in online.values()),
                "onlineUsers": len(online),
                "thisServer": socket_count(self.sio) if self.sio else 0,
            },
        }

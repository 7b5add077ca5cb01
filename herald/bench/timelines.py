"""Where an in-app notification's time goes, read from Herald's own stage timelines.

Every notification's telemetry timeline (`herald.telemetry.stages`) says when each step
happened, in every process. After the in-app rate phase the bench reads them all and reports
each leg's p50/p95/p99 (the scenarios' `percentiles`), so a latency figure comes with the leg
that makes it:

- `legRequest`: `server` → `queue`, the API storing the notification and enqueueing its job;
- `legQueueWait`: `queue` → first `worker`, the job waiting for a worker to take it;
- `legEmitToAck`: `worker` → `ack`, the claim, the emit through Redis, the API relaying it to
  the socket, the client's ack and the API recording it;
- `legAckToWorker`: `ack` → last `channel`, the ack reaching the attempt waiting for it.

A peer keeps no timelines: it gets no such figures.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from herald.telemetry.stages import KEY_PREFIX

LEGS = {
    "legRequest": ("server", "queue"),
    "legQueueWait": ("queue", "worker"),
    "legEmitToAck": ("worker", "ack"),
    "legAckToWorker": ("ack", "channel"),
}


def _when(events: list[dict[str, Any]]) -> dict[str, float]:
    """Each stage's time: its first event, except `channel` (the attempt's end): its last."""
    seen: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e["timestamp"]):
        if event["stage"] == "channel" or event["stage"] not in seen:
            seen[event["stage"]] = event["timestamp"]
    return seen


async def legs(redis_url: str) -> dict[str, list[float]]:
    """Each leg's durations (seconds) over every in-app timeline that reached an ack."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    found: dict[str, list[float]] = {leg: [] for leg in LEGS}
    try:
        async for key in client.scan_iter(f"{KEY_PREFIX}*", count=1000):
            events = [json.loads(e) for e in await client.lrange(key, 0, -1)]
            when = _when([e for e in events if e.get("channel") in (None, "inapp")])
            if "ack" not in when:
                continue
            for leg, (start, end) in LEGS.items():
                if start in when and end in when:
                    found[leg].append((when[end] - when[start]) / 1000)
    finally:
        await client.aclose()
    return {leg: seconds for leg, seconds in found.items() if seconds}

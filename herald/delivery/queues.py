"""The BullMQ queues of both ladders, and idempotent enqueueing.

The job id is the notification's channel and id (`email-42`), so enqueueing the same
notification twice into one queue is a no-op: the reconciler and a retrying request can never
create a duplicate job.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from bullmq import Queue

from herald.core.config import Settings
from herald.delivery import bullmq_clients
from herald.notifications.ladder import Tier, all_queue_names, job_id, ladder
from herald.notifications.models import Channel

POOL_SIZE = 50
# The one queue outside the channels' ladders: digests' delayed close jobs (herald.digests).
# Counted with the ladders, so health, metrics and the overdue alert see it too.
DIGESTS_QUEUE = "digests"
# BullMQ keeps a delayed job in a sorted set scored by its due time in ms times 0x1000 (the low
# 12 bits order the jobs due in the same millisecond).
DELAYED_SCORE_SCALE = 0x1000
# A delayed job due longer ago than this and still not promoted means no worker is waiting on
# its queue (a worker promotes due jobs at least every 10 s, even when idle).
OVERDUE_AFTER_MS = 15_000
KEEP_COMPLETED = {"age": 3600, "count": 1000}
KEEP_FAILED = {"age": 7 * 24 * 3600, "count": 10_000}
# What `counts` reports per queue; BullMQ's scripts call the waiting list "wait".
COUNTED_STATES = ("waiting", "active", "delayed", "completed", "failed")
_SCRIPT_STATES = ["wait" if state == "waiting" else state for state in COUNTED_STATES]
# States in which a job will still run (or, in a dead-letter queue, waits for a person).
LIVE_STATES = frozenset({"waiting", "active", "delayed", "prioritized", "waiting-children"})


class Queues:
    def __init__(self, settings: Settings, redis_url: str):
        self.settings = settings
        self.redis_url = redis_url
        self._queues: dict[str, Queue] = {}
        # One pool for every queue: a request's enqueue takes a free connection rather than
        # waiting behind other requests on its queue's single connection.
        self._client = bullmq_clients.command_client(redis_url, max_connections=POOL_SIZE)

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = bullmq_clients.queue(name, self._client)
        return self._queues[name]

    def tier(self, channel: Channel, index: int) -> Tier:
        return ladder(self.settings, channel)[index]

    def dead_letter(self, channel: Channel) -> Tier:
        return ladder(self.settings, channel)[-1]

    async def enqueue_many(
        self, notifications: Collection[tuple[Channel, int, str | None]]
    ) -> dict[tuple[Channel, int, str | None], str]:
        """Enqueue (channel, id, telemetry id)s at their first tier, now: one Redis pipeline
        (MULTI/EXEC of BullMQ's own addJob script, as `Queue.addBulk` sends it) per queue
        instead of a round trip each. The same jobs, ids and options as `enqueue`, so it is
        as idempotent. Returns the queue of each; raises if any was refused."""
        by_queue: dict[str, list[tuple[Channel, int, str | None]]] = {}
        for item in notifications:
            by_queue.setdefault(self.tier(item[0], 0).queue, []).append(item)
        done: dict[tuple[Channel, int, str | None], str] = {}
        for name, items in by_queue.items():
            jobs = [
                {
                    "name": f"{channel.value}.deliver",
                    "data": self._data(channel, nid, 0, tid),
                    "opts": self._opts(channel, nid, self.tier(channel, 0)),
                }
                for channel, nid, tid in items
            ]
            await self.get(name).addBulk(jobs)
            done.update((item, name) for item in items)
        return done

    def _data(
        self, channel: Channel, notification_id: int, tier: int, telemetry_id: str | None
    ) -> dict[str, Any]:
        return {
            "channel": channel.value,
            "notificationId": notification_id,
            "tier": tier,
            "telemetryId": telemetry_id,
        }

    def _opts(self, channel: Channel, notification_id: int, target: Tier) -> dict[str, Any]:
        return {
            "jobId": job_id(channel, notification_id),
            "attempts": max(target.attempts, 1),
            "backoff": {"type": "exponential", "delay": self.settings.backoff_delay},
            "removeOnComplete": KEEP_COMPLETED,
            "removeOnFail": KEEP_FAILED,
        }

    async def enqueue(
        self,
        channel: Channel,
        notification_id: int,
        *,
        tier: int = 0,
        delay_ms: int = 0,
        telemetry_id: str | None = None,
    ) -> str:
        target = self.tier(channel, tier)
        data = self._data(channel, notification_id, tier, telemetry_id)
        opts = self._opts(channel, notification_id, target)
        if delay_ms:
            opts["delay"] = delay_ms
        await self.get(target.queue).add(f"{channel.value}.deliver", data, opts)
        return target.queue

    async def state(self, queue: str, job: str) -> str:
        """The job's BullMQ state, or "unknown" when the queue has no such job."""
        return str(await self.get(queue).getJobState(job))

    async def live(self, queue: str, jobs: Sequence[str]) -> set[str]:
        """Which of these jobs will still run (or wait in a dead-letter queue): one round trip."""
        states = await bullmq_clients.job_states(self.get(queue), jobs) if jobs else []
        return {job for job, state in zip(jobs, states, strict=True) if state in LIVE_STATES}

    async def requeue(
        self,
        channel: Channel,
        notification_id: int,
        *,
        tier: int,
        telemetry_id: str | None,
        delay_ms: int = 0,
    ) -> bool:
        """Enqueue again unless a live job exists; a finished job of the same id (which would
        make `add` a no-op) is removed first. Returns whether a job was added."""
        queue = self.tier(channel, tier).queue
        job = job_id(channel, notification_id)
        current = await self.state(queue, job)
        if current in LIVE_STATES:
            return False
        if current != "unknown":
            await self.get(queue).remove(job)
        await self.enqueue(
            channel, notification_id, tier=tier, delay_ms=delay_ms, telemetry_id=telemetry_id
        )
        return True

    async def forget(self, channel: Channel, notification_id: int) -> None:
        """Remove this notification's idle jobs from every tier (before a replay or discard)."""
        job = job_id(channel, notification_id)
        for tier in ladder(self.settings, channel):
            if await self.state(tier.queue, job) not in ("unknown", "active"):
                await self.get(tier.queue).remove(job)

    def tier_of_queue(self, channel: Channel, queue: str | None) -> Tier:
        for tier in ladder(self.settings, channel):
            if tier.queue == queue:
                return tier
        return self.tier(channel, 0)

    async def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per state in every queue, and `overdue`: delayed jobs well past their due time.

        In one pipelined round trip (BullMQ's `getCounts` script per queue, as
        `Queue.getJobCounts` runs it one queue per round trip), and a second one for the
        overdue counts of queues that hold delayed jobs."""
        names = [*all_queue_names(self.settings), DIGESTS_QUEUE]
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                scripts = self.get(name).scripts
                script = scripts.commands["getCounts"]
                await script(keys=scripts.getKeys([""]), args=_SCRIPT_STATES, client=pipe)
            found = await pipe.execute()
        result = {
            name: {state: int(n or 0) for state, n in zip(COUNTED_STATES, raw, strict=True)}
            for name, raw in zip(names, found, strict=True)
        }
        delayed = [name for name in names if result[name]["delayed"]]
        async with self._client.pipeline(transaction=False) as pipe:
            for name in delayed:
                pipe.zcount(self.get(name).keys["delayed"], "-inf", _overdue_cutoff())
            overdue = dict(zip(delayed, await pipe.execute(), strict=True)) if delayed else {}
        for name, states in result.items():
            states["overdue"] = int(overdue.get(name, 0))
        return result

    async def due_at(self, queue: str, job: str) -> float | None:
        """When a delayed job is due, in ms since the epoch (None if it is not delayed)."""
        score = await self._client.zscore(self.get(queue).keys["delayed"], job)
        return None if score is None else score // DELAYED_SCORE_SCALE

    async def close(self) -> None:
        self._queues.clear()
        await self._client.aclose()


def _overdue_cutoff() -> int:
    """The delayed set's score below which a job is overdue now."""
    return (int(time.time() * 1000) - OVERDUE_AFTER_MS) * DELAYED_SCORE_SCALE

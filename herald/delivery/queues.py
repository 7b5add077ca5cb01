"""The BullMQ queues of both ladders, and idempotent enqueueing.

The job id is the notification's channel and id (`email-42`), so enqueueing the same
notification twice into one queue is a no-op: the reconciler and a retrying request can never
create a duplicate job.
"""

from __future__ import annotations

from typing import Any

from bullmq import Queue

from herald.core.config import Settings
from herald.delivery.ladder import Tier, all_queue_names, ladder
from herald.notifications.models import Channel

KEEP_COMPLETED = {"age": 3600, "count": 1000}
KEEP_FAILED = {"age": 7 * 24 * 3600, "count": 10_000}
# States in which a job will still run (or, in a dead-letter queue, waits for a person).
LIVE_STATES = frozenset({"waiting", "active", "delayed", "prioritized", "waiting-children"})


def job_id(channel: Channel, notification_id: int) -> str:
    return f"{channel.value}-{notification_id}"


class Queues:
    def __init__(self, settings: Settings, redis_url: str):
        self.settings = settings
        self.redis_url = redis_url
        self._queues: dict[str, Queue] = {}

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            self._queues[name] = Queue(name, {"connection": self.redis_url})
        return self._queues[name]

    def tier(self, channel: Channel, index: int) -> Tier:
        return ladder(self.settings, channel)[index]

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
        data = {
            "channel": channel.value,
            "notificationId": notification_id,
            "tier": tier,
            "telemetryId": telemetry_id,
        }
        opts: dict[str, Any] = {
            "jobId": job_id(channel, notification_id),
            "attempts": max(target.attempts, 1),
            "backoff": {"type": "exponential", "delay": self.settings.backoff_delay},
            "removeOnComplete": KEEP_COMPLETED,
            "removeOnFail": KEEP_FAILED,
        }
        if delay_ms:
            opts["delay"] = delay_ms
        await self.get(target.queue).add(f"{channel.value}.deliver", data, opts)
        return target.queue

    async def state(self, queue: str, job: str) -> str:
        """The job's BullMQ state, or "unknown" when the queue has no such job."""
        return str(await self.get(queue).getJobState(job))

    async def requeue(
        self, channel: Channel, notification_id: int, *, tier: int, telemetry_id: str | None
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
        await self.enqueue(channel, notification_id, tier=tier, telemetry_id=telemetry_id)
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
        states = ("waiting", "active", "delayed", "completed", "failed")
        result = {}
        for name in all_queue_names(self.settings):
            raw = await self.get(name).getJobCounts(*states)
            result[name] = {state: int(raw.get(state, 0)) for state in states}
        return result

    async def close(self) -> None:
        for queue in self._queues.values():
            await queue.close()
        self._queues.clear()

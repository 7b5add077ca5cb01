"""What a channel accepted but the database did not record: kept in Redis so the next run of the
job records it instead of sending again.

After SMTP accepts a message (or a socket emit goes out), the processor writes the outcome to
the database. If that write keeps failing (the database's connections were cut), the job fails
and BullMQ runs it again; the row still says `sending`, and without this memory the next run
would send a second copy. So when recording fails, the worker (which is still alive) writes the
accepted result here first; a run that finds its row mid-attempt looks here before sending.
Only a worker that dies between the channel's acceptance and this write can still duplicate.
"""

from __future__ import annotations

import dataclasses
import json

import redis.asyncio as aioredis

from herald.delivery.senders import DeliveryResult
from herald.notifications.models import Channel

# As long as BullMQ keeps a failed job: the reconciler may re-run the notification that late.
KEEP_SECONDS = 7 * 24 * 3600


def _key(channel: Channel, notification_id: int) -> str:
    return f"herald:accepted:{channel.value}-{notification_id}"


class AcceptedOutcomes:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def remember(
        self, channel: Channel, notification_id: int, result: DeliveryResult
    ) -> None:
        payload = json.dumps(dataclasses.asdict(result))
        await self.redis.set(_key(channel, notification_id), payload, ex=KEEP_SECONDS)

    async def recall(self, channel: Channel, notification_id: int) -> DeliveryResult | None:
        payload = await self.redis.get(_key(channel, notification_id))
        return None if payload is None else DeliveryResult(**json.loads(payload))

    async def forget(self, channel: Channel, notification_id: int) -> None:
        await self.redis.delete(_key(channel, notification_id))

"""The four-tier retry ladder, defined once for every channel (email, in-app, webhook).

Tier 0 is the channel's main queue, tiers 1 and 2 are its retry queues, and the last tier is
its dead-letter queue, which nothing drains by itself: a person replays or discards.
Inside a tier BullMQ retries with exponential backoff; when a tier is used up the job moves to
the next tier after that tier's delay.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from herald.core.config import Settings
from herald.notifications.models import Channel


@dataclass(frozen=True)
class Tier:
    index: int
    queue: str
    attempts: int  # 0 for the dead-letter queue
    delay_ms: int  # wait before the first attempt in this tier
    concurrency: int

    @property
    def is_dead_letter(self) -> bool:
        return self.attempts == 0


def ladder(settings: Settings, channel: Channel) -> tuple[Tier, ...]:
    s = settings
    if channel is Channel.EMAIL:
        rows = [
            ("mail", s.mail_max_attempts, 0, s.mail_queue_concurrency),
            ("mail-retry-1", s.mail_retry_1_max_attempts, s.retry_1_delay, s.retry_1_concurrency),
            ("mail-retry-2", s.mail_retry_2_max_attempts, s.retry_2_delay, s.retry_2_concurrency),
            ("mail-dlq", 0, 0, s.dlq_concurrency),
        ]
    elif channel is Channel.WEBHOOK:
        rows = [
            ("webhook", s.webhook_max_attempts, 0, s.webhook_queue_concurrency),
            ("webhook-retry-1", s.webhook_retry_1_max_attempts, s.webhook_retry_1_delay,
             s.webhook_retry_1_concurrency),
            ("webhook-retry-2", s.webhook_retry_2_max_attempts, s.webhook_retry_2_delay,
             s.webhook_retry_2_concurrency),
            ("webhook-dlq", 0, 0, s.webhook_dlq_concurrency),
        ]  # fmt: skip
    else:
        rows = [
            ("inapp", s.inapp_max_attempts, 0, s.inapp_queue_concurrency),
            ("inapp-retry-1", s.inapp_retry_1_max_attempts, s.inapp_retry_1_delay,
             s.inapp_retry_1_concurrency),
            ("inapp-retry-2", s.inapp_retry_2_max_attempts, s.inapp_retry_2_delay,
             s.inapp_retry_2_concurrency),
            ("inapp-dlq", 0, 0, s.inapp_dlq_concurrency),
        ]  # fmt: skip
    return _tiers(tuple(rows))


@functools.lru_cache(maxsize=64)
def _tiers(rows: tuple[tuple[str, int, int, int], ...]) -> tuple[Tier, ...]:
    """The tiers made once per distinct ladder: every trigger and job asks for its ladder a few
    times, and building frozen dataclasses each time was 2 % of a busy API server's CPU."""
    return tuple(Tier(i, *row) for i, row in enumerate(rows))


def all_queue_names(settings: Settings) -> list[str]:
    return [t.queue for channel in Channel for t in ladder(settings, channel)]


def total_attempts(settings: Settings, channel: Channel) -> int:
    return sum(t.attempts for t in ladder(settings, channel))


def escalation_routes(settings: Settings) -> dict[tuple[str, str], tuple[str, str]]:
    """Where each tier's escalating attempts go, by (queue, outcome): the next tier
    ("escalated"), or the dead-letter queue ("dead-lettered", a permanent error); with the
    channel. Telemetry labels its escalation metrics by them."""
    found = {}
    for channel in Channel:
        tiers = ladder(settings, channel)
        for tier, after in itertools.pairwise(tiers):
            found[(tier.queue, "escalated")] = (channel.value, after.queue)
            found[(tier.queue, "dead-lettered")] = (channel.value, tiers[-1].queue)
    return found

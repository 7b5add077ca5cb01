"""The four-tier retry ladder, defined once for every channel (email, in-app, webhook).

Tier 0 is the channel's main queue, tiers 1 and 2 are its retry queues, and the last tier is
its dead-letter queue, which nothing drains by itself: a person replays or discards.
Inside a tier BullMQ retries with exponential backoff; when a tier is used up the job moves to
the next tier after that tier's delay. Each channel's numbers are `Settings.ladders[channel]`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from herald.core.config import LadderSettings, Settings
from herald.notifications.models import Channel


def job_id(channel: Channel, notification_id: int) -> str:
    """A notification's job id, the same in every tier's queue."""
    return f"{channel.value}-{notification_id}"


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
    return _tiers(settings.ladders[channel])


@functools.lru_cache(maxsize=64)
def _tiers(configured: LadderSettings) -> tuple[Tier, ...]:
    """The tiers made once per distinct ladder: every trigger and job asks for its ladder a few
    times, and building frozen dataclasses each time was 2 % of a busy API server's CPU."""
    last = len(configured.tiers) - 1
    return tuple(
        Tier(i, _queue_name(configured.queue, i, last), t.attempts, t.delay_ms, t.concurrency)
        for i, t in enumerate(configured.tiers)
    )


def _queue_name(main: str, index: int, last: int) -> str:
    if index == 0:
        return main
    return f"{main}-dlq" if index == last else f"{main}-retry-{index}"


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

"""Emitting Herald's delivery events to the registered endpoints.

An event becomes one `WebhookDelivery` row per subscribed endpoint, which the ladder then
delivers like any notification (tiers, dead-letter queue, replay). Where the change an event
announces is written in one transaction (a failed attempt, an escalation, a delivery by SMTP,
an ack, a read), its rows are written in that same transaction (`stage`), and enqueued after
the commit; `notification.queued`'s are committed just before the enqueue they announce
(herald.notifications.service), and a later caller's (a skipped notification's) right after
its commit (`publish`).

The guarantee is at least once: a row committed is delivered (its enqueue failing leaves it
to the reconciler, as any notification) and may be delivered twice (a worker dying after the
receiver answered 2xx); every attempt carries the same `webhook-id`, for receivers to dedupe.
The one gap: a process that dies between a notification's commit and its `queued` rows'
commit loses that `queued` event (its later events are not affected).

A webhook delivery's own fate makes no events: no loops.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.config import Settings
from herald.core.db import transaction
from herald.notifications.ladder import ladder, total_attempts
from herald.notifications.models import Channel, DeliveryState, Status, WebhookDelivery
from herald.webhooks.registry import EndpointCache


class Dispatches(Protocol):
    """Enqueues committed notifications (herald.delivery.dispatch.Dispatcher, which in turn
    announces through this module: the two are wired together by herald.runtime)."""

    async def dispatch(
        self, notifications: Sequence[DeliveryState], *, by: str = "api"
    ) -> None: ...


log = logging.getLogger(__name__)

QUEUED = "notification.queued"
DELIVERED = "notification.delivered"
FAILED = "notification.failed"
ESCALATED = "notification.escalated"
DEAD_LETTERED = "notification.dead_lettered"
ACKED = "notification.acked"
READ = "notification.read"
SKIPPED = "notification.skipped"
EVENT_TYPES = (QUEUED, DELIVERED, FAILED, ESCALATED, DEAD_LETTERED, ACKED, READ, SKIPPED)


@dataclass(frozen=True)
class Event:
    """One thing that happened to one notification. `data` is the payload's `data`."""

    type: str
    data: dict[str, Any]
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(12)}")

    def body(self) -> str:
        """The exact JSON every attempt sends (and signs)."""
        stamp = self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = {"type": self.type, "timestamp": stamp, "data": self.data}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def notification_event(
    kind: str,
    *,
    channel: Channel,
    notification_id: int,
    type: str,
    status: str,
    user_id: int | None = None,
    **extra: Any,
) -> Event:
    """An event about one notification, from what the caller has at hand (a row or the
    columns an UPDATE ... RETURNING gave back)."""
    data = {
        "notificationId": notification_id,
        "channel": channel.value,
        "type": type,
        "status": status,
        "userId": user_id,
        **extra,
    }
    return Event(kind, data)


def of_row(kind: str, n: DeliveryState, *, status: str | None = None, **extra: Any) -> Event:
    return notification_event(
        kind,
        channel=n.channel,
        notification_id=n.id,
        type=getattr(n, "type", ""),
        status=status or n.status,
        user_id=getattr(n, "user_id", None),
        **extra,
    )


class WebhookEvents:
    def __init__(
        self, settings: Settings, db: async_sessionmaker[AsyncSession], endpoints: EndpointCache
    ) -> None:
        self.settings = settings
        self.db = db
        self.endpoints = endpoints
        self.dispatcher: Dispatches | None = None  # set once both exist (herald.runtime)
        self._first = ladder(settings, Channel.WEBHOOK)[0].queue
        self._max_attempts = total_attempts(settings, Channel.WEBHOOK)

    async def stage(self, session: AsyncSession, events: Sequence[Event]) -> list[WebhookDelivery]:
        """Add the delivery rows of `events` to the caller's transaction; pass what this
        returns to `dispatch` after the commit. Nothing (and no query) when no endpoint wants
        any of them."""
        rows = []
        for event in events:
            if event.data.get("channel") == Channel.WEBHOOK.value:
                continue  # a webhook's own fate is never announced by webhook: no loops
            for endpoint in await self.endpoints.matching(event.type):
                rows.append(
                    WebhookDelivery(
                        event_id=event.id,
                        endpoint_id=endpoint.id,
                        type=event.type,
                        url=endpoint.url,
                        payload=event.body(),
                        status=Status.QUEUED,
                        queue_name=self._first,
                        attempts=0,
                        max_attempts=self._max_attempts,
                    )
                )
        session.add_all(rows)
        return rows

    async def dispatch(self, rows: Sequence[WebhookDelivery]) -> None:
        """Enqueue committed rows; a refused enqueue leaves them to the reconciler."""
        if rows and self.dispatcher is not None:
            await self.dispatcher.dispatch(rows, by="webhooks")

    async def publish(self, events: Sequence[Event]) -> None:
        """Write and enqueue the rows of `events` in a transaction of their own, right after
        what they announce. Never raises: a failure here must not fail what already
        happened (it is logged as `webhooks.publish_failed`)."""
        try:
            if not await self.wanted(events):
                return
            async with transaction(self.db) as session:
                rows = await self.stage(session, events)
            await self.dispatch(rows)
        except Exception as exc:
            log.warning(
                "webhooks.publish_failed",
                extra={"events": [e.type for e in events][:10], "error": repr(exc)},
            )

    async def wanted(self, events: Sequence[Event]) -> bool:
        """Whether any endpoint wants any of these events (no query while the cache is
        fresh)."""
        return await self.wants(*(event.type for event in events))

    async def wants(self, *kinds: str) -> bool:
        """Whether any endpoint wants an event of these kinds."""
        for kind in kinds:
            if await self.endpoints.matching(kind):
                return True
        return False


def skipped(n: DeliveryState, reason: str) -> Event:
    """`notification.skipped` for a notification created `skipped` (its recipient opted out,
    herald.preferences): stage it in the transaction that writes the row, after a flush gave
    it its id, or hand it to `publish_skipped` after the commit."""
    return of_row(SKIPPED, n, reason=reason)


async def publish_skipped(events: WebhookEvents, rows: Sequence[tuple[DeliveryState, str]]) -> None:
    """`notification.skipped` for committed (row, reason)s; no query when nobody listens."""
    await events.publish([skipped(n, reason) for n, reason in rows])

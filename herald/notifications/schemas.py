"""How notifications and their audit trail look on the wire (REST and Socket.IO)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.schemas import CamelModel
from herald.notifications.ladder import job_id
from herald.notifications.models import (
    MODEL_OF,
    Channel,
    DeliveryAttempt,
    DeliveryState,
    EmailNotification,
    Escalation,
    InAppNotification,
    WebhookDelivery,
)


class AttemptOut(CamelModel):
    attempt: int
    timestamp: datetime
    status: str
    error: str | None
    queue_name: str
    delivery_method: str | None
    socket_id: str | None
    message_id: str | None
    smtp_response: str | None


class RetryOut(CamelModel):
    attempt: int
    timestamp: datetime
    queue: str
    error: str | None


class EscalationOut(CamelModel):
    from_queue: str
    to_queue: str
    timestamp: datetime
    reason: str
    attempts: int


class DeliveryTracking(CamelModel):
    notification_id: int
    job_id: str
    type: str
    status: str
    queue_name: str | None
    attempts: int
    max_attempts: int
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None
    discarded_at: datetime | None
    discard_reason: str | None
    created_at: datetime
    updated_at: datetime
    delivery_history: list[AttemptOut]
    escalation_history: list[EscalationOut]


class EmailTracking(DeliveryTracking):
    recipient: str
    subject: str
    message_id: str | None
    retry_history: list[RetryOut]


class InAppTracking(DeliveryTracking):
    title: str
    socket_id: str | None
    delivered_via: str | None
    expires_at: datetime
    is_read: bool
    read_at: datetime | None


class WebhookTracking(DeliveryTracking):
    event_id: str
    endpoint_id: int
    url: str
    response: str | None
    retry_history: list[RetryOut]


Tracking = EmailTracking | InAppTracking | WebhookTracking


@dataclass
class Histories:
    """The audit trail of some notifications of one channel, by notification id."""

    attempts: dict[int, list[DeliveryAttempt]] = field(default_factory=lambda: defaultdict(list))
    escalations: dict[int, list[Escalation]] = field(default_factory=lambda: defaultdict(list))


async def histories(session: AsyncSession, channel: Channel, ids: Sequence[int]) -> Histories:
    """Every attempt and escalation of these notifications, oldest first, in two queries."""
    found = Histories()
    for a in await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.channel == channel.value, DeliveryAttempt.notification_id.in_(ids))
        .order_by(DeliveryAttempt.id)
    ):
        found.attempts[a.notification_id].append(a)
    for e in await session.scalars(
        select(Escalation)
        .where(Escalation.channel == channel.value, Escalation.notification_id.in_(ids))
        .order_by(Escalation.id)
    ):
        found.escalations[e.notification_id].append(e)
    return found


def retry_history(attempts: list[DeliveryAttempt]) -> list[RetryOut]:
    """`retryHistory`: the attempts that failed."""
    return [
        RetryOut(attempt=a.attempt, timestamp=a.timestamp, queue=a.queue_name, error=a.error)
        for a in attempts
        if a.error is not None
    ]


async def tracking(
    session: AsyncSession, notifications: Sequence[DeliveryState]
) -> dict[tuple[Channel, int], Tracking]:
    """The tracking block of each notification, with its history, as they are now (the rows
    given are read again only if they changed meanwhile)."""
    result: dict[tuple[Channel, int], Tracking] = {}
    for channel in Channel:
        rows = [n for n in notifications if n.channel is channel]
        if rows:
            result |= await _blocks(session, channel, [n.id for n in rows], rows)
    return result


async def tracking_of(
    session: AsyncSession, ids: dict[Channel, list[int]]
) -> dict[tuple[Channel, int], Tracking]:
    """The tracking block of each notification by id."""
    result: dict[tuple[Channel, int], Tracking] = {}
    for channel, wanted in ids.items():
        if wanted:
            result |= await _blocks(session, channel, wanted)
    return result


async def _blocks(
    session: AsyncSession, channel: Channel, ids: list[int], rows: Sequence[DeliveryState] = ()
) -> dict[tuple[Channel, int], Tracking]:
    """One channel's tracking blocks, row and trail read together (`consistent`)."""
    current, found = await consistent(session, channel, ids, rows)
    return {
        (channel, n.id): _tracking(n, found.attempts[n.id], found.escalations[n.id])
        for n in current
    }


# Reads of a row and its trail before giving up on a moment without a change between them.
CONSISTENT_READ_TRIES = 5


async def consistent(
    session: AsyncSession, channel: Channel, ids: Sequence[int], rows: Sequence[DeliveryState] = ()
) -> tuple[list[DeliveryState], Histories]:
    """The rows (`rows` if given, else read) and their audit trail as they were at one moment.

    The row and its trail are separate statements, and each sees the commits made before it
    started: a delivery committed between them showed a `delivered` attempt under a status still
    `queued`, or the other way round. Every change that writes to the trail updates its row's
    `updated_at` in the same transaction, so the trail read between two reads of the rows'
    `updated_at` that agree belongs to those rows; otherwise the rows are read again."""
    model = MODEL_OF[channel]
    fresh = select(model).where(model.id.in_(ids)).execution_options(populate_existing=True)
    stamps = select(model.id, model.updated_at).where(model.id.in_(ids))
    current = list(rows) or list(await session.scalars(fresh))
    for _ in range(CONSISTENT_READ_TRIES):
        found = await histories(session, channel, ids)
        now = dict((await session.execute(stamps)).tuples().all())
        if all(now.get(n.id) == n.updated_at for n in current):
            break
        current = list(await session.scalars(fresh))
    return current, found


async def email_trackings(
    session: AsyncSession, emails: Sequence[EmailNotification]
) -> dict[int, EmailTracking]:
    blocks = await tracking(session, emails)
    return {n.id: cast(EmailTracking, blocks[(n.channel, n.id)]) for n in emails}


async def email_tracking(session: AsyncSession, n: EmailNotification) -> EmailTracking:
    return (await email_trackings(session, [n]))[n.id]


def _tracking(
    n: DeliveryState, attempts: list[DeliveryAttempt], escalations: list[Escalation]
) -> Tracking:
    common: dict[str, Any] = {
        "notification_id": n.id,
        "job_id": job_id(n.channel, n.id),
        "type": getattr(n, "type", ""),
        "status": n.status,
        "queue_name": n.queue_name,
        "attempts": n.attempts,
        "max_attempts": n.max_attempts,
        "last_attempt_at": n.last_attempt_at,
        "delivered_at": n.delivered_at,
        "failed_at": n.failed_at,
        "failure_reason": n.failure_reason,
        "discarded_at": n.discarded_at,
        "discard_reason": n.discard_reason,
        "created_at": n.created_at,
        "updated_at": n.updated_at,
        "delivery_history": [AttemptOut.model_validate(a) for a in attempts],
        "escalation_history": [EscalationOut.model_validate(e) for e in escalations],
    }
    if isinstance(n, EmailNotification):
        return EmailTracking(
            **common,
            recipient=n.recipient_email,
            subject=n.subject,
            message_id=n.message_id,
            retry_history=retry_history(attempts),
        )
    if isinstance(n, WebhookDelivery):
        return WebhookTracking(
            **common,
            event_id=n.event_id,
            endpoint_id=n.endpoint_id,
            url=n.url,
            response=n.response,
            retry_history=retry_history(attempts),
        )
    assert isinstance(n, InAppNotification)
    return InAppTracking(
        **common,
        title=n.title,
        socket_id=n.socket_id,
        delivered_via=n.delivered_via,
        expires_at=n.expires_at,
        is_read=n.is_read,
        read_at=n.read_at,
    )


def inapp_event(n: InAppNotification) -> dict[str, Any]:
    """The payload of `notification:new`, JSON-ready."""
    return {
        "id": n.id,
        "type": n.type,
        "title": n.title,
        "message": n.message,
        "data": n.data,
        "priority": n.priority,
        "isRead": n.is_read,
        "createdAt": n.created_at.isoformat() if n.created_at else None,
        "expiresAt": n.expires_at.isoformat(),
        "telemetryId": n.telemetry_id,
    }

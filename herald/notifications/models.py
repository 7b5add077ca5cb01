"""Notification rows and their audit trail.

Every channel shares `DeliveryState` (status, tier, attempt counters) so one ladder drives both.
The audit trail is one row per attempt and per escalation rather than ever-growing arrays;
the API renders them as the `deliveryHistory`, `retryHistory` and `escalationHistory` arrays.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, Index, Insert, String, Text, UniqueConstraint, insert
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, Timestamped, table, utcnow


class Channel(StrEnum):
    EMAIL = "email"
    INAPP = "inapp"
    # Not a way to reach a recipient: Herald's own events POSTed to the application's
    # registered endpoints (herald.webhooks), through the same ladder and dead-letter queue.
    WEBHOOK = "webhook"


class Status(StrEnum):
    PENDING = "pending"  # committed, not yet on a queue
    QUEUED = "queued"  # on a queue, waiting for (another) attempt
    SENDING = "sending"  # an email worker is talking to SMTP right now
    DELIVERED = "delivered"
    FAILED = "failed"  # in the dead-letter queue, waiting for a person
    EXPIRED = "expired"  # in-app only: past `expires_at` before anyone received it
    # In-app only: withdrawn before delivery, because what it announced is gone (a friend
    # request rejected, cancelled, deleted, blocked or expired). Never sent, not even by catch-up.
    NOT_SENT = "not_sent"
    # Email only: waiting for its digest (herald.digests), never sent on its own.
    HELD = "held"
    # Email only: carried by a digest email (`digest_id`), which is what gets delivered.
    DIGESTED = "digested"
    # Never queued: the recipient's preferences turned it off (`failure_reason` says which
    # switch). Kept, so the application sees what was not sent and why.
    SKIPPED = "skipped"


# No job ever sends a row in these (a held one goes out with its digest).
FINAL_STATUSES = frozenset(
    {
        Status.DELIVERED,
        Status.EXPIRED,
        Status.NOT_SENT,
        Status.HELD,
        Status.DIGESTED,
        Status.SKIPPED,
    }
)
# Statuses an inbox leaves out: the recipient never got these.
HIDDEN_STATUSES = (Status.EXPIRED, Status.NOT_SENT, Status.SKIPPED)


class DeliveryState(Timestamped):
    channel: ClassVar[Channel]
    id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=Status.PENDING, index=True)
    queue_name: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=0)
    last_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)
    telemetry_id: Mapped[str | None] = mapped_column(String(64))
    # The API key whose request created it (None: the admin token, or a user's own action).
    # No foreign key: a revoked key's notifications keep pointing at it.
    api_key_id: Mapped[int | None]
    # A dead letter a person chose to drop: it stays `failed`, leaves the DLQ, and says why.
    discarded_at: Mapped[datetime | None]
    discard_reason: Mapped[str | None] = mapped_column(Text)


class EmailNotification(DeliveryState, Base):
    __tablename__ = "email_notifications"
    channel = Channel.EMAIL

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    recipient_email: Mapped[str] = mapped_column(String(320))
    recipient_username: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    smtp_response: Mapped[str | None] = mapped_column(Text)
    # Digests (herald.digests): a held row's group key, and the digest that carried it. No
    # foreign key, so adding the column copies no table on SQLite.
    digest_key: Mapped[str | None] = mapped_column(String(255))
    digest_id: Mapped[int | None] = mapped_column(index=True)
    # The signed token of its one-click unsubscribe link (herald.notifications.unsubscribe);
    # None for critical types. The body carries the link, the sender the List-Unsubscribe header.
    unsubscribe_token: Mapped[str | None] = mapped_column(Text)


class InAppNotification(DeliveryState, Base):
    __tablename__ = "inapp_notifications"
    channel = Channel.INAPP
    __table_args__ = (Index("ix_inapp_user_created", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    recipient_username: Mapped[str | None] = mapped_column(String(64))
    recipient_email: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    socket_id: Mapped[str | None] = mapped_column(String(64))
    delivered_via: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    is_read: Mapped[bool] = mapped_column(default=False)
    read_at: Mapped[datetime | None]
    # When a client confirmed receipt with `notification:ack`; until then, every new
    # connection of the recipient gets it again (catch-up).
    acked_at: Mapped[datetime | None]


class WebhookDelivery(DeliveryState, Base):
    """One event for one registered endpoint (herald.webhooks): the exact body it is sent
    with, and the `webhook-id` every attempt, retry and replay of it carries."""

    __tablename__ = "webhook_deliveries"
    channel = Channel.WEBHOOK
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The event's id, shared by every endpoint that receives it: receivers dedupe on it.
    event_id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    type: Mapped[str] = mapped_column(String(32), index=True)  # notification.delivered, ...
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[str] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)  # the receiver's status line


class DeliveryAttempt(Base):
    """One attempt to deliver one notification, whatever its outcome."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_attempts_notification", "channel", "notification_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    notification_id: Mapped[int]
    attempt: Mapped[int]
    timestamp: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    queue_name: Mapped[str] = mapped_column(String(32))
    delivery_method: Mapped[str | None] = mapped_column(String(16))
    socket_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(255))
    smtp_response: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def of(
        cls,
        n: DeliveryState,
        status: str,
        queue_name: str,
        *,
        error: str | None = None,
        method: str | None = None,
        socket_id: str | None = None,
        message_id: str | None = None,
        smtp_response: str | None = None,
    ) -> DeliveryAttempt:
        """The audit row for what just happened to `n`, numbered as its current attempt."""
        return cls(
            **attempt_row(
                n.channel,
                n.id,
                n.attempts,
                status,
                queue_name,
                error=error,
                method=method,
                socket_id=socket_id,
                message_id=message_id,
                smtp_response=smtp_response,
            )
        )


def attempt_row(
    channel: Channel,
    notification_id: int,
    attempt: int,
    status: str,
    queue_name: str,
    *,
    error: str | None = None,
    method: str | None = None,
    socket_id: str | None = None,
    message_id: str | None = None,
    smtp_response: str | None = None,
) -> dict[str, Any]:
    """An audit row's values for a bulk INSERT, when there is no ORM object to build it from."""
    return {
        "channel": channel.value,
        "notification_id": notification_id,
        "attempt": attempt,
        "timestamp": utcnow(),
        "status": status,
        "error": error,
        "queue_name": queue_name,
        "delivery_method": method,
        "socket_id": socket_id,
        "message_id": message_id,
        "smtp_response": smtp_response,
    }


# Audit rows from `attempt_row`, one or many: a statement built once (hot paths run it per
# notification, and building it cost about as much CPU as sending it).
ATTEMPT_INSERT: Insert = insert(table(DeliveryAttempt))


class Escalation(Base):
    """A notification moving from one tier's queue to the next (or back, on replay)."""

    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_notification", "channel", "notification_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    notification_id: Mapped[int]
    from_queue: Mapped[str] = mapped_column(String(32))
    to_queue: Mapped[str] = mapped_column(String(32))
    timestamp: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int]


MODEL_OF: dict[Channel, type[DeliveryState]] = {
    Channel.EMAIL: EmailNotification,
    Channel.INAPP: InAppNotification,
    Channel.WEBHOOK: WebhookDelivery,
}

"""One notification, whole: every field of an email or in-app notification record.

The tracking blocks embedded in signups, logins and friend requests show how a delivery went;
the record is the notification itself, as one document: the recipient, the content, the
delivery state, and its audit trail under `metadata`. The API (`GET /api/notifications/...`)
and the CLI (`herald notifications show`) both render it from here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.schemas import CamelModel
from herald.digests.links import DigestLink, carried_by, digest_of
from herald.digests.service import DIGEST_TYPE
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
from herald.notifications.schemas import (
    AttemptOut,
    EscalationOut,
    RetryOut,
    consistent,
    retry_history,
)


class Recipient(CamelModel):
    user_id: int | None
    username: str | None
    email: str | None


class Content(CamelModel):
    html: str
    text: str


class RecordMetadata(CamelModel):
    delivery_history: list[AttemptOut]
    escalation_history: list[EscalationOut]
    retry_history: list[RetryOut]


class NotificationRecord(CamelModel):
    id: int
    type: str
    recipient: Recipient
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
    job_id: str
    telemetry_id: str | None
    api_key_id: int | None = Field(
        None, description="the API key whose request created it (null: the admin token or a user)"
    )
    metadata: RecordMetadata
    created_at: datetime
    updated_at: datetime


class EmailRecord(NotificationRecord):
    channel: Literal["email"] = "email"
    subject: str
    content: Content
    message_id: str | None
    smtp_response: str | None
    digest: DigestLink | None = Field(
        None, description="a digested type's email: its digest and the email that delivered it"
    )
    carried: list[int] | None = Field(
        None, description="a digest email: the notifications it carried"
    )


class InAppRecord(NotificationRecord):
    channel: Literal["inapp"] = "inapp"
    title: str
    message: str
    data: dict[str, Any]
    priority: str
    socket_id: str | None
    delivered_via: str | None
    expires_at: datetime
    is_read: bool
    read_at: datetime | None
    acked_at: datetime | None


class WebhookRecord(NotificationRecord):
    """One event for one endpoint (`type` is the event's: `notification.delivered`, ...)."""

    channel: Literal["webhook"] = "webhook"
    event_id: str = Field(description="its `webhook-id`: the same on every attempt")
    endpoint_id: int
    url: str
    payload: str = Field(description="the exact body every attempt sends")
    response: str | None


Record = EmailRecord | InAppRecord | WebhookRecord


async def load(
    session: AsyncSession, channel: Channel, notification_id: int
) -> DeliveryState | None:
    return await session.get(MODEL_OF[channel], notification_id)


async def record(session: AsyncSession, n: DeliveryState) -> Record:
    """`n` with its whole audit trail, as they were at one moment (`consistent`)."""
    rows, found = await consistent(session, n.channel, [n.id], [n])
    n = rows[0] if rows else n  # (a row deleted meanwhile: as it was)
    out = _record(n, found.attempts[n.id], found.escalations[n.id])
    if isinstance(n, EmailNotification) and isinstance(out, EmailRecord):
        out.digest = await digest_of(session, n)
        out.carried = await carried_by(session, n) if n.type == DIGEST_TYPE else None
    return out


def _record(
    n: DeliveryState, attempts: list[DeliveryAttempt], escalations: list[Escalation]
) -> Record:
    common: dict[str, Any] = {
        "id": n.id,
        "type": getattr(n, "type", ""),
        "recipient": Recipient(
            user_id=getattr(n, "user_id", None),
            username=getattr(n, "recipient_username", None),
            email=getattr(n, "recipient_email", None),
        ),
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
        "job_id": job_id(n.channel, n.id),
        "telemetry_id": n.telemetry_id,
        "api_key_id": n.api_key_id,
        "metadata": RecordMetadata(
            delivery_history=[AttemptOut.model_validate(a) for a in attempts],
            escalation_history=[EscalationOut.model_validate(e) for e in escalations],
            retry_history=retry_history(attempts),
        ),
        "created_at": n.created_at,
        "updated_at": n.updated_at,
    }
    if isinstance(n, EmailNotification):
        return EmailRecord(
            **common,
            subject=n.subject,
            content=Content(html=n.html, text=n.text),
            message_id=n.message_id,
            smtp_response=n.smtp_response,
        )
    if isinstance(n, WebhookDelivery):
        return WebhookRecord(
            **common,
            event_id=n.event_id,
            endpoint_id=n.endpoint_id,
            url=n.url,
            payload=n.payload,
            response=n.response,
        )
    assert isinstance(n, InAppNotification)
    return InAppRecord(
        **common,
        title=n.title,
        message=n.message,
        data=n.data or {},
        priority=n.priority,
        socket_id=n.socket_id,
        delivered_via=n.delivered_via,
        expires_at=n.expires_at,
        is_read=n.is_read,
        read_at=n.read_at,
        acked_at=n.acked_at,
    )

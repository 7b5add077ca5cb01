"""What Herald answers, as typed objects: snake_case attributes over the API's camelCase JSON.

Fields a newer Herald adds are kept (`model_extra`) rather than refused, so an older client
keeps working against a newer server."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Channel = Literal["email", "inapp"]
Priority = Literal["low", "normal", "high", "urgent"]


class HeraldModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class Subscriber(HeraldModel):
    subscriber_id: str
    email: str | None = None
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SubscriberPage(HeraldModel):
    items: list[Subscriber]
    next_cursor: str | None = None


class BulkResult(HeraldModel):
    created: int
    updated: int


class DeletedSubscriber(HeraldModel):
    """What a delete removed with the subscriber: their notifications, of each channel."""

    deleted: bool
    notifications_removed: int = 0
    emails_removed: int = 0
    inapp_removed: int = 0


class CreatedNotification(HeraldModel):
    channel: Channel
    notification_id: int
    job_id: str
    status: str
    user_id: int | None = None
    subscriber_id: str | None = None
    email: str | None = None


class TriggerResult(HeraldModel):
    count: int
    notifications: list[CreatedNotification]
    replayed: bool = False  # the server answered from its idempotency record: nothing new made


class NotificationRecord(HeraldModel):
    """One notification, whole (`GET /api/notifications/{channel}/{id}`). Email-only and
    in-app-only fields are None on the other channel."""

    id: int
    channel: Channel
    type: str
    status: str
    recipient: dict[str, Any] = Field(default_factory=dict)
    queue_name: str | None = None
    attempts: int = 0
    max_attempts: int = 0
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str | None = None
    job_id: str | None = None
    telemetry_id: str | None = None
    api_key_id: int | None = None  # the API key whose trigger created it
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # email
    subject: str | None = None
    message_id: str | None = None
    # in-app
    title: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = None
    priority: str | None = None
    is_read: bool | None = None
    read_at: datetime | None = None
    acked_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


class InboxItem(HeraldModel):
    id: int
    type: str
    title: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    priority: str = "normal"
    status: str
    is_read: bool
    read_at: datetime | None = None
    delivered_at: datetime | None = None
    acked_at: datetime | None = None
    created_at: datetime
    expires_at: datetime | None = None


class InboxPage(HeraldModel):
    items: list[InboxItem]
    page: int
    limit: int
    total: int
    pages: int


class Marked(HeraldModel):
    marked: list[int]
    unread_count: int


class ApiKey(HeraldModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    key: str | None = None  # only in the answer to its creation

"""Registered webhook endpoints. Their deliveries are `WebhookDelivery` rows, beside the other
channels' rows in herald.notifications.models, since the one ladder drives them all."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, utcnow


class WebhookEndpoint(Base):
    """Where to POST which events. The secret is kept as it is (not hashed): Herald signs
    every delivery with it. A deleted endpoint keeps its row (its deliveries refer to it)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # event types, or ["*"]
    description: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(100))  # whsec_<base64>
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]

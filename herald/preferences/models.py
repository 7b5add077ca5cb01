"""Preference switches, declared notification types, and opt-outs of plain addresses.

A subscriber's preferences are rows of switches rather than one JSON document: a PUT or a
one-click unsubscribe writes only the switches it names (an upsert per switch, no
read-modify-write that two concurrent writes could undo), and the trigger reads them with the
recipient lookup it already makes (a LEFT JOIN, no extra round trip).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, Timestamped, utcnow

ANY = "*"  # in `type`: every type (a channel switch); in `channel`: every channel of the type


class Preference(Base):
    """One switch of one subscriber: `(type, channel)` on or off. `("*", "email")` is the
    email channel for every type, `("promo", "*")` the type on every channel, and
    `("promo", "email")` that type's email alone. The most specific switch decides."""

    __tablename__ = "subscriber_preferences"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationType(Timestamped, Base):
    """A notification type the application declared. `critical` ones (a password reset, a
    login alert) are delivered whatever the recipient's preferences say, and their emails
    carry no unsubscribe link."""

    __tablename__ = "notification_types"

    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    critical: Mapped[bool] = mapped_column(default=False)


class AddressOptOut(Base):
    """A plain address (an email recipient with no subscriber) that unsubscribed from a type."""

    __tablename__ = "address_opt_outs"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

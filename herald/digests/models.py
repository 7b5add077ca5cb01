"""Digest rules (per notification type) and digests (one window of one subscriber's emails).

A held email (`email_notifications.status = 'held'`) carries its subscriber, type and group key
(`digest_key`) but no digest: it is bound to one when a digest of that key closes, in the
closing transaction (herald.digests.service). At most one digest per key is `open` at a time,
which a partial unique index enforces, so concurrent triggers cannot open two windows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, Timestamped


class DigestRule(Timestamped, Base):
    """How a notification type's emails are digested: every `window_seconds` from the first
    one, or until the next `daily_at` (HH:MM in the subscriber's time zone); grouped by
    `group_by` (a `data.` path of the trigger's data) when set."""

    __tablename__ = "digest_rules"

    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_seconds: Mapped[int | None]
    daily_at: Mapped[str | None] = mapped_column(String(5))
    group_by: Mapped[str | None] = mapped_column(String(200))


class DigestStatus(StrEnum):
    OPEN = "open"  # collecting: held emails of its key go out with it
    SENT = "sent"  # closed: its email (email_id) carries what it held
    EMPTY = "empty"  # closed with nothing held (another window took it): no email


OPEN_ONLY = text("status = 'open'")


class Digest(Timestamped, Base):
    __tablename__ = "digests"
    __table_args__ = (
        Index(
            "uq_digests_open_key",
            "user_id",
            "type",
            "group_key",
            unique=True,
            sqlite_where=OPEN_ONLY,
            postgresql_where=OPEN_ONLY,
        ),
        Index("ix_digests_status_closes_at", "status", "closes_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    type: Mapped[str] = mapped_column(String(32))
    group_key: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(8), default=DigestStatus.OPEN)
    closes_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    # The email that delivered it. No foreign key: it is set in the transaction that makes it.
    email_id: Mapped[int | None] = mapped_column(index=True)

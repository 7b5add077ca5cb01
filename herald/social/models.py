"""Friend requests. An accepted request *is* the friendship."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ColumnElement, ForeignKey, Index, String, Text, exists, or_, text
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, Timestamped


class RequestStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    EXPIRED = "expired"  # pending past `expires_at`, closed by the cleanup


# A pair of users has at most one live relationship: a pending request, a friendship, or a
# block. The database enforces it, so two racing requests can't both get in.
LIVE_STATUSES = (RequestStatus.PENDING, RequestStatus.ACCEPTED, RequestStatus.BLOCKED)
_LIVE_SQL = "request_status IN ('pending', 'accepted', 'blocked')"


class RelationshipType(StrEnum):
    FRIEND = "friend"
    CLOSE_FRIEND = "close_friend"
    FAMILY = "family"
    COLLEAGUE = "colleague"
    ACQUAINTANCE = "acquaintance"


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"  # never shown to third parties, e.g. in their mutual-friends lists
    MUTUAL_ONLY = "mutual_only"


class FriendRequest(Timestamped, Base):
    __tablename__ = "friend_requests"
    __table_args__ = (
        Index(
            "uq_friend_requests_live_pair",
            "pair_low",
            "pair_high",
            unique=True,
            sqlite_where=text(_LIVE_SQL),
            postgresql_where=text(_LIVE_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    from_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    from_username: Mapped[str] = mapped_column(String(64))
    to_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    to_username: Mapped[str] = mapped_column(String(64))
    # The two ids in order, so (a, b) and (b, a) are one pair for the unique index.
    pair_low: Mapped[int]
    pair_high: Mapped[int]
    message: Mapped[str | None] = mapped_column(Text)
    request_status: Mapped[str] = mapped_column(
        String(16), default=RequestStatus.PENDING, index=True
    )
    accepted_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    blocked_at: Mapped[datetime | None]
    # A snapshot taken when the request is made: [{"userId", "username"}].
    mutual_friends: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    mutual_friends_count: Mapped[int] = mapped_column(default=0)
    relationship_type: Mapped[str] = mapped_column(String(16), default=RelationshipType.FRIEND)
    previous_interactions: Mapped[int] = mapped_column(default=0)
    blocked_by_receiver: Mapped[bool] = mapped_column(default=False)
    reported_as_spam: Mapped[bool] = mapped_column(default=False)
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.PUBLIC)
    expires_at: Mapped[datetime]
    assigned_server: Mapped[str | None] = mapped_column(String(128))
    processed_by: Mapped[str | None] = mapped_column(String(128))
    inapp_notification_id: Mapped[int | None] = mapped_column(ForeignKey("inapp_notifications.id"))
    # `metadata` is taken on declarative classes; the column is still named `metadata`.
    extra: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)


def friend_requests_of(user_id: int) -> ColumnElement[bool]:
    """True while friend requests from or to the user exist
    (herald.subscribers.service.SharedHistory)."""
    return exists().where(
        or_(FriendRequest.from_user_id == user_id, FriendRequest.to_user_id == user_id)
    )

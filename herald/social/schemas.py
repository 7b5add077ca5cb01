from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from herald.core.schemas import CamelInput, CamelModel
from herald.notifications.schemas import InAppTracking
from herald.social.models import RelationshipType, RequestStatus, Visibility

USER_ID = Field(None, ge=1, le=2**31 - 1)


class FriendRequestIn(CamelInput):
    to_user_id: int | None = USER_ID
    to_username: str | None = Field(None, min_length=1, max_length=64)
    message: str | None = Field(None, max_length=500)
    relationship_type: RelationshipType = RelationshipType.FRIEND
    visibility: Visibility = Visibility.PUBLIC
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _recipient(self) -> FriendRequestIn:
        if self.to_user_id is None and self.to_username is None:
            raise ValueError("give toUserId or toUsername")
        return self


class BlockIn(CamelInput):
    report_as_spam: bool = False


class MutualFriend(CamelModel):
    user_id: int
    username: str


class FriendRequestNotification(InAppTracking):
    """`friendRequestInAppNotification`: how the in-app notification to the recipient went."""

    queue_job_id: str = Field(description="the BullMQ job id (same as jobId)")


class FriendRequestOut(CamelModel):
    friend_request_id: int
    from_user_id: int
    from_username: str
    to_user_id: int
    to_username: str
    message: str | None
    request_status: RequestStatus
    accepted_at: datetime | None
    rejected_at: datetime | None
    cancelled_at: datetime | None
    blocked_at: datetime | None
    mutual_friends: list[MutualFriend]
    mutual_friends_count: int
    relationship_type: RelationshipType
    previous_interactions: int
    blocked_by_receiver: bool
    reported_as_spam: bool
    visibility: Visibility
    expires_at: datetime
    is_expired: bool
    assigned_server: str | None
    processed_by: str | None
    friend_request_in_app_notification: FriendRequestNotification | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class FriendOut(CamelModel):
    user_id: int
    username: str
    friend_request_id: int
    relationship_type: RelationshipType
    visibility: Visibility
    friends_since: datetime | None


class FriendRequestStatistics(CamelModel):
    total: int
    by_status: dict[str, int]
    pending_expired: int = Field(description="pending past their expiry, awaiting cleanup")
    acceptance_rate: float | None = Field(description="accepted / (accepted + rejected)")
    created_last_24h: int = Field(serialization_alias="createdLast24h")
    notifications: dict[str, int] = Field(description="in-app notifications by status")


class CleanupOut(CamelModel):
    expired: int = Field(description="pending requests past expiry, now closed as expired")

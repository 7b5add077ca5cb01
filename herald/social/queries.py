"""Reading friend requests: rendering with their notification tracking, lists, statistics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.db import utcnow
from herald.core.pagination import Page, PageParams, fetch_page, page_of
from herald.notifications.models import InAppNotification, Status
from herald.notifications.tracked import load_tracking
from herald.social.models import FriendRequest, RelationshipType, RequestStatus, Visibility
from herald.social.schemas import (
    FriendOut,
    FriendRequestNotification,
    FriendRequestOut,
    FriendRequestStatistics,
    MutualFriend,
)

Direction = Literal["all", "sent", "received"]


async def render(
    session: AsyncSession, requests: list[FriendRequest], viewer: int | None
) -> list[FriendRequestOut]:
    """The requests as `viewer` (a user id; None: the admin) may see them. The notification's
    delivery tracking (read receipts, socket ids, "recipient offline" attempts) is the
    recipient's business: the sender sees none of it."""
    shown = [r.inapp_notification_id for r in requests if viewer in (None, r.to_user_id)]
    tracked = await load_tracking(session, inapp_ids=shown)
    now = utcnow()
    out = []
    for r in requests:
        block = tracked.inapp(r.inapp_notification_id) if viewer in (None, r.to_user_id) else None
        notification = (
            FriendRequestNotification(**block.model_dump(), queue_job_id=block.job_id)
            if block
            else None
        )
        out.append(
            FriendRequestOut(
                friend_request_id=r.id,
                from_user_id=r.from_user_id,
                from_username=r.from_username,
                to_user_id=r.to_user_id,
                to_username=r.to_username,
                message=r.message,
                request_status=RequestStatus(r.request_status),
                accepted_at=r.accepted_at,
                rejected_at=r.rejected_at,
                cancelled_at=r.cancelled_at,
                blocked_at=r.blocked_at,
                mutual_friends=[MutualFriend.model_validate(m) for m in r.mutual_friends],
                mutual_friends_count=r.mutual_friends_count,
                relationship_type=RelationshipType(r.relationship_type),
                previous_interactions=r.previous_interactions,
                blocked_by_receiver=r.blocked_by_receiver,
                reported_as_spam=r.reported_as_spam,
                visibility=Visibility(r.visibility),
                expires_at=r.expires_at,
                is_expired=r.request_status == RequestStatus.EXPIRED
                or (r.request_status == RequestStatus.PENDING and r.expires_at <= now),
                assigned_server=r.assigned_server,
                processed_by=r.processed_by,
                friend_request_in_app_notification=notification,
                metadata=r.extra or {},
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )
    return out


async def one(
    session: AsyncSession, request: FriendRequest, viewer: int | None
) -> FriendRequestOut:
    [out] = await render(session, [request], viewer)
    return out


async def page(
    session: AsyncSession, query: Select[Any], params: PageParams, viewer: int | None
) -> Page[FriendRequestOut]:
    rows, total = await fetch_page(session, query.order_by(FriendRequest.id.desc()), params)
    return page_of(await render(session, rows, viewer), params, total)


def listing(user_id: int | None, direction: Direction, status: RequestStatus | None) -> Select[Any]:
    """Requests involving `user_id` (all users when None), sent or received or both."""
    query = select(FriendRequest)
    if user_id is not None:
        sides = {
            "sent": FriendRequest.from_user_id == user_id,
            "received": FriendRequest.to_user_id == user_id,
            "all": or_(FriendRequest.from_user_id == user_id, FriendRequest.to_user_id == user_id),
        }
        query = query.where(sides[direction])
    if status is not None:
        query = query.where(FriendRequest.request_status == status)
    return query


def incoming_pending(user_id: int) -> Select[Any]:
    return select(FriendRequest).where(
        FriendRequest.to_user_id == user_id,
        FriendRequest.request_status == RequestStatus.PENDING,
        FriendRequest.expires_at > utcnow(),
    )


async def friends(session: AsyncSession, user_id: int, params: PageParams) -> Page[FriendOut]:
    query = (
        select(FriendRequest)
        .where(
            FriendRequest.request_status == RequestStatus.ACCEPTED,
            or_(FriendRequest.from_user_id == user_id, FriendRequest.to_user_id == user_id),
        )
        .order_by(FriendRequest.accepted_at.desc(), FriendRequest.id.desc())
    )
    rows, total = await fetch_page(session, query, params)
    items = [
        FriendOut(
            user_id=r.to_user_id if r.from_user_id == user_id else r.from_user_id,
            username=r.to_username if r.from_user_id == user_id else r.from_username,
            friend_request_id=r.id,
            relationship_type=RelationshipType(r.relationship_type),
            visibility=Visibility(r.visibility),
            friends_since=r.accepted_at,
        )
        for r in rows
    ]
    return page_of(items, params, total)


def with_notification_status(statuses: tuple[str, ...]) -> Select[Any]:
    return (
        select(FriendRequest)
        .join(InAppNotification, InAppNotification.id == FriendRequest.inapp_notification_id)
        .where(InAppNotification.status.in_(statuses))
    )


async def statistics(session: AsyncSession) -> FriendRequestStatistics:
    now = utcnow()
    by_status = dict(
        (
            await session.execute(
                select(FriendRequest.request_status, func.count(FriendRequest.id)).group_by(
                    FriendRequest.request_status
                )
            )
        )
        .tuples()
        .all()
    )
    counts = {s.value: int(by_status.get(s.value, 0)) for s in RequestStatus}
    overdue = await session.scalar(
        select(func.count(FriendRequest.id)).where(
            FriendRequest.request_status == RequestStatus.PENDING, FriendRequest.expires_at <= now
        )
    )
    recent = await session.scalar(
        select(func.count(FriendRequest.id)).where(
            FriendRequest.created_at > now - timedelta(days=1)
        )
    )
    notified = dict(
        (
            await session.execute(
                select(InAppNotification.status, func.count(InAppNotification.id))
                .join(FriendRequest, FriendRequest.inapp_notification_id == InAppNotification.id)
                .group_by(InAppNotification.status)
            )
        )
        .tuples()
        .all()
    )
    decided = counts["accepted"] + counts["rejected"]
    return FriendRequestStatistics(
        total=sum(counts.values()),
        by_status=counts,
        pending_expired=overdue or 0,
        acceptance_rate=round(counts["accepted"] / decided, 4) if decided else None,
        created_last_24h=recent or 0,
        notifications={
            s.value: int(notified.get(s.value, 0)) for s in Status if s is not Status.SENDING
        },
    )

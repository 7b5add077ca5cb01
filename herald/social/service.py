"""Friend-request state changes. Each one commits, then queues the notifications it made.

Who may do what: only the recipient accepts, rejects or blocks; only the sender cancels; either
side may delete. Someone who is neither gets a 404, so ids reveal nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from herald.accounts.models import User
from herald.core.client import ClientInfo
from herald.core.db import transaction, utcnow
from herald.core.errors import Conflict, Forbidden, InvalidField, NotFound
from herald.notifications.models import Channel, DeliveryState, InAppNotification, Status
from herald.notifications.service import new_inapp
from herald.preferences import skips
from herald.social.models import (
    LIVE_STATUSES,
    FriendRequest,
    RequestStatus,
    Visibility,
)
from herald.social.schemas import FriendRequestIn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from herald.core.config import Settings
    from herald.delivery.queues import Queues
    from herald.preferences.service import TypeRegistry

MUTUAL_FRIENDS_SHOWN = 50
# A notification still in these may yet be sent: withdrawing it stops that.
UNDELIVERED = (Status.PENDING, Status.QUEUED, Status.SENDING, Status.FAILED)


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


async def friend_ids(session: AsyncSession, user_id: int, *, for_third_party: bool) -> set[int]:
    """Ids of the user's friends. Seen by a third party, private friendships are left out."""
    query = select(FriendRequest.from_user_id, FriendRequest.to_user_id).where(
        FriendRequest.request_status == RequestStatus.ACCEPTED,
        or_(FriendRequest.from_user_id == user_id, FriendRequest.to_user_id == user_id),
    )
    if for_third_party:
        query = query.where(FriendRequest.visibility != Visibility.PRIVATE)
    rows = (await session.execute(query)).tuples()
    return {b if a == user_id else a for a, b in rows}


async def _mutual_friends(session: AsyncSession, a: int, b: int) -> tuple[list[dict], int]:
    mutual = await friend_ids(session, a, for_third_party=True) & await friend_ids(
        session, b, for_third_party=True
    )
    if not mutual:
        return [], 0
    shown = sorted(mutual)[:MUTUAL_FRIENDS_SHOWN]
    users = await session.execute(select(User.id, User.username).where(User.id.in_(shown)))
    return [{"userId": i, "username": n} for i, n in sorted(users.tuples())], len(mutual)


async def _recipient(session: AsyncSession, data: FriendRequestIn) -> User:
    if data.to_user_id is not None:
        user = await session.get(User, data.to_user_id)
        field = "toUserId"
    else:
        user = await session.scalar(
            select(User).where(func.lower(User.username) == (data.to_username or "").lower())
        )
        field = "toUsername"
    # Friend requests are between people who signed up: a subscriber an application
    # registered has no username to show.
    if user is None or user.username is None:
        raise InvalidField(field, "no such user")
    return user


async def _ensure_no_live_relationship(
    session: AsyncSession, sender_id: int, low: int, high: int
) -> None:
    live = await session.scalar(
        select(FriendRequest).where(
            FriendRequest.pair_low == low,
            FriendRequest.pair_high == high,
            FriendRequest.request_status.in_(LIVE_STATUSES),
        )
    )
    if live is None:
        return
    if live.request_status == RequestStatus.ACCEPTED:
        raise Conflict("you are already friends")
    if live.request_status == RequestStatus.BLOCKED:
        raise Forbidden("you can't send a friend request to this user", code="blocked")
    if live.expires_at <= utcnow():
        # Expired but not cleaned up yet: close it now so a fresh request can be made.
        live.request_status = RequestStatus.EXPIRED
        await _withdraw_notifications(session, _notification_of(live.id))
        await session.flush()
        return
    if live.from_user_id == sender_id:
        raise Conflict("you already sent this user a friend request")
    raise Conflict("this user already sent you a friend request: accept it instead")


async def _withdraw_notifications(session: AsyncSession, requests: Select[Any]) -> list[int]:
    """The undelivered in-app notifications of these requests become `not_sent`: what they
    announce is gone, so no worker and no catch-up sends them any more. Returns their ids.

    They also expire now: a worker whose attempt is in flight writes its outcome over the
    status (the processor's updates are unguarded), but nothing sends an expired one."""
    ids = list(
        (
            await session.execute(
                update(InAppNotification)
                .where(
                    InAppNotification.id.in_(requests),
                    InAppNotification.acked_at.is_(None),
                    InAppNotification.status.in_(UNDELIVERED),
                )
                .values(status=Status.NOT_SENT, expires_at=utcnow(), updated_at=utcnow())
                .returning(InAppNotification.id)
            )
        )
        .scalars()
        .all()
    )
    return ids


def _notification_of(request_id: int) -> Select[Any]:
    return select(FriendRequest.inapp_notification_id).where(FriendRequest.id == request_id)


async def _load_for(session: AsyncSession, request_id: int, user: User | None) -> FriendRequest:
    """The request, if `user` (None: the admin) is one of its two sides; else 404."""
    request = await session.get(FriendRequest, request_id, with_for_update=True)
    if request is None or (user is not None and user.id not in _sides(request)):
        raise NotFound(f"no friend request {request_id}")
    return request


def _sides(request: FriendRequest) -> tuple[int, int]:
    return request.from_user_id, request.to_user_id


def _ensure_pending(request: FriendRequest) -> None:
    if request.request_status != RequestStatus.PENDING:
        raise Conflict(f"the request is {request.request_status}, not pending")
    if request.expires_at <= utcnow():
        raise Conflict("the request has expired")


@dataclass(eq=False)
class FriendRequests:
    """Sends, answers, deletes and expires friend requests, with the notifications they make."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    types: TypeRegistry
    queues: Queues
    outbox: skips.Outbox

    async def create(
        self, sender: User, data: FriendRequestIn, client: ClientInfo
    ) -> FriendRequest:
        now = utcnow()
        critical = await self.types.is_critical("friend_request")
        skipped: list[tuple[DeliveryState, skips.Blocked]] = []
        try:
            async with transaction(self.db) as session:
                recipient = await _recipient(session, data)
                if recipient.id == sender.id:
                    raise InvalidField("toUserId", "you can't send a friend request to yourself")
                low, high = _pair(sender.id, recipient.id)
                await _ensure_no_live_relationship(session, sender.id, low, high)
                mutual, mutual_count = await _mutual_friends(session, sender.id, recipient.id)
                previous = await session.scalar(
                    select(func.count(FriendRequest.id)).where(
                        FriendRequest.pair_low == low, FriendRequest.pair_high == high
                    )
                )
                request = FriendRequest(
                    from_user_id=sender.id,
                    from_username=sender.username,
                    to_user_id=recipient.id,
                    to_username=recipient.username,
                    pair_low=low,
                    pair_high=high,
                    message=data.message,
                    request_status=RequestStatus.PENDING,
                    mutual_friends=mutual,
                    mutual_friends_count=mutual_count,
                    relationship_type=data.relationship_type,
                    previous_interactions=previous or 0,
                    blocked_by_receiver=False,
                    reported_as_spam=False,
                    visibility=data.visibility,
                    expires_at=now + timedelta(days=self.settings.friend_request_ttl_days),
                    assigned_server=self.settings.effective_server_id,
                    processed_by=client.telemetry_id,
                    extra=data.metadata,
                )
                session.add(request)
                await session.flush()
                inapp = new_inapp(
                    self.settings,
                    "friend_request",
                    user_id=recipient.id,
                    username=recipient.username,
                    email=recipient.email,
                    title="New friend request",
                    message=f"{sender.username} sent you a friend request."
                    + (f" {mutual_count} mutual friend(s)." if mutual_count else ""),
                    data={
                        "friendRequestId": request.id,
                        "fromUserId": sender.id,
                        "fromUsername": sender.username,
                        "message": data.message,
                    },
                    telemetry_id=client.telemetry_id,
                )
                if not critical:  # the recipient's preferences may turn it off
                    skipped = await skips.screen(session, recipient.id, "friend_request", [inapp])
                session.add(inapp)
                await session.flush()
                request.inapp_notification_id = inapp.id
        except IntegrityError:  # a concurrent request for the same pair got in first
            raise Conflict("a friend request between you two is already open") from None
        await self.outbox.send([inapp], skipped)
        return request

    async def _forget_jobs(self, notification_ids: list[int]) -> None:
        for notification_id in notification_ids:  # waiting jobs (retry tiers, DLQ) leave the queues
            await self.queues.forget(Channel.INAPP, notification_id)

    async def respond(
        self,
        request_id: int,
        user: User,
        action: str,
        client: ClientInfo,
        *,
        report_as_spam: bool = False,
    ) -> FriendRequest:
        """accept, reject or block (the recipient), or cancel (the sender)."""
        now = utcnow()
        notify: InAppNotification | None = None
        withdrawn: list[int] = []
        skipped: list[tuple[DeliveryState, skips.Blocked]] = []
        critical = action == "accept" and await self.types.is_critical("friend_request_accepted")
        async with transaction(self.db) as session:
            request = await _load_for(session, request_id, user)
            role_ok = user.id == (
                request.from_user_id if action == "cancel" else request.to_user_id
            )
            if not role_ok:
                who = "sender" if action == "cancel" else "recipient"
                raise Forbidden(f"only the request's {who} can {action} it")
            if action == "block":
                # Only the pair's live request can become the block (the database allows one).
                if request.request_status not in (RequestStatus.PENDING, RequestStatus.ACCEPTED):
                    raise Conflict(f"the request is {request.request_status}; it can't be blocked")
                request.request_status = RequestStatus.BLOCKED
                request.blocked_at = now
                request.blocked_by_receiver = True
                request.reported_as_spam = request.reported_as_spam or report_as_spam
            else:
                _ensure_pending(request)
                if action == "accept":
                    request.request_status, request.accepted_at = RequestStatus.ACCEPTED, now
                    notify = self._accepted_notification(request, client)
                    if not critical:  # the sender's preferences may turn it off
                        skipped = await skips.screen(
                            session, request.from_user_id, notify.type, [notify]
                        )
                    session.add(notify)
                elif action == "reject":
                    request.request_status, request.rejected_at = RequestStatus.REJECTED, now
                else:
                    request.request_status, request.cancelled_at = RequestStatus.CANCELLED, now
            request.processed_by = client.telemetry_id
            request.updated_at = now
            if action != "accept":  # rejected, cancelled or blocked: nothing left to announce
                withdrawn = await _withdraw_notifications(session, _notification_of(request.id))
        if notify is not None:
            await self.outbox.send([notify], skipped)
        await self._forget_jobs(withdrawn)
        return request

    def _accepted_notification(
        self, request: FriendRequest, client: ClientInfo
    ) -> InAppNotification:
        return new_inapp(
            self.settings,
            "friend_request_accepted",
            user_id=request.from_user_id,
            username=request.from_username,
            email=None,
            title="Friend request accepted",
            message=f"{request.to_username} accepted your friend request.",
            data={
                "friendRequestId": request.id,
                "userId": request.to_user_id,
                "username": request.to_username,
            },
            telemetry_id=client.telemetry_id,
        )

    async def delete(self, request_id: int, user: User | None) -> None:
        """Remove a request (an accepted one: the friendship ends; a block: it is lifted)."""
        async with transaction(self.db) as session:
            request = await _load_for(session, request_id, user)
            if (
                request.request_status == RequestStatus.BLOCKED
                and user is not None
                and user.id != request.to_user_id
            ):
                # Deleting a block lifts it: only the one who blocked may do that.
                raise Forbidden("only the user who blocked this request can lift the block")
            withdrawn = await _withdraw_notifications(session, _notification_of(request.id))
            await session.delete(request)
        await self._forget_jobs(withdrawn)

    async def expire_overdue(self) -> int:
        """Close every pending request past its expiry; returns how many."""
        now = utcnow()
        overdue = select(FriendRequest.id).where(
            FriendRequest.request_status == RequestStatus.PENDING, FriendRequest.expires_at <= now
        )
        async with transaction(self.db) as session:
            ids = list((await session.scalars(overdue.with_for_update())).all())
            if not ids:
                return 0
            await session.execute(
                update(FriendRequest)
                .where(FriendRequest.id.in_(ids))
                .values(request_status=RequestStatus.EXPIRED, updated_at=now)
            )
            notifications = select(FriendRequest.inapp_notification_id).where(
                FriendRequest.id.in_(ids)
            )
            withdrawn = await _withdraw_notifications(session, notifications)
        await self._forget_jobs(withdrawn)
        return len(ids)

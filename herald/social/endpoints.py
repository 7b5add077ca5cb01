"""The fifteen friend-request endpoints, under `/api/friend-requests`.

Static paths (`statistics`, `notifications/...`, `user/...`, `cleanup`) are declared before
`/{friendRequestId}` so they are never mistaken for an id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.deps import CallerDep, CurrentUserDep, OperatorCallerDep
from herald.accounts.models import User
from herald.apikeys.deps import AdminDep, ReadDep
from herald.core.client import ClientInfo
from herald.core.errors import NotFound
from herald.core.pagination import Page
from herald.notifications.models import Status
from herald.social import queries
from herald.social.models import FriendRequest, RequestStatus
from herald.social.queries import Direction
from herald.social.schemas import (
    BlockIn,
    CleanupOut,
    FriendOut,
    FriendRequestIn,
    FriendRequestOut,
    FriendRequestStatistics,
)
from herald.social.service import FriendRequests
from herald.web.deps import ClientDep, DbDep, PageDep, app_state
from herald.web.errors import errors

router = APIRouter(prefix="/api/friend-requests", tags=["friend requests"])
FriendRequestsDep = Annotated[FriendRequests, app_state("friend_requests")]

RequestId = Annotated[int, Path(alias="friendRequestId", ge=1, le=2**31 - 1)]
UserId = Annotated[int, Path(alias="userId", ge=1, le=2**31 - 1)]
StatusFilter = Annotated[RequestStatus | None, Query(alias="status")]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def create_friend_request(
    data: FriendRequestIn,
    user: CurrentUserDep,
    friend_requests: FriendRequestsDep,
    db: DbDep,
    client: ClientDep,
) -> FriendRequestOut:
    """Send a friend request (by `toUserId` or `toUsername`); the recipient gets an in-app
    notification, tracked on the request. 409 if one between you two is already open or you
    are already friends; 403 if the recipient blocked you. Expires after 30 days."""
    request = await friend_requests.create(user, data, client)
    async with db() as session:
        return await queries.one(session, request, user.id)


@router.get("")
async def list_friend_requests(
    db: DbDep,
    caller: CallerDep,
    page: PageDep,
    request_status: StatusFilter = None,
    direction: Annotated[Direction, Query()] = "all",
) -> Page[FriendRequestOut]:
    """Your friend requests, sent and received (or `direction=sent|received`), newest first.
    With the admin token: everyone's."""
    user_id = caller.user.id if caller.user else None
    async with db() as session:
        return await queries.page(
            session, queries.listing(user_id, direction, request_status), page, user_id
        )


@router.get("/statistics", dependencies=[ReadDep])
async def friend_request_statistics(db: DbDep) -> FriendRequestStatistics:
    async with db() as session:
        return await queries.statistics(session)


@router.get("/notifications/failed", dependencies=[ReadDep])
async def failed_notifications(db: DbDep, page: PageDep) -> Page[FriendRequestOut]:
    """Requests whose in-app notification ended in the dead-letter queue (admin token)."""
    async with db() as session:
        return await queries.page(
            session, queries.with_notification_status((Status.FAILED,)), page, None
        )


@router.get("/notifications/pending", dependencies=[ReadDep])
async def pending_notifications(db: DbDep, page: PageDep) -> Page[FriendRequestOut]:
    """Requests whose in-app notification is not delivered yet (admin token)."""
    async with db() as session:
        return await queries.page(
            session,
            queries.with_notification_status((Status.PENDING, Status.QUEUED)),
            page,
            None,
        )


@router.post("/cleanup", dependencies=[AdminDep])
async def cleanup_expired(friend_requests: FriendRequestsDep) -> CleanupOut:
    """Close every pending request past its expiry as `expired` (admin token)."""
    return CleanupOut(expired=await friend_requests.expire_overdue())


@router.get("/user/{userId}/pending")
async def user_pending(
    user_id: UserId, db: DbDep, caller: CallerDep, page: PageDep
) -> Page[FriendRequestOut]:
    """Requests waiting for this user's answer (unexpired): your own, or anyone's (admin)."""
    caller.ensure_may_see(user_id)
    async with db() as session:
        return await queries.page(session, queries.incoming_pending(user_id), page, caller.user_id)


@router.get("/user/{userId}/sent")
async def user_sent(
    user_id: UserId,
    db: DbDep,
    caller: CallerDep,
    page: PageDep,
    request_status: StatusFilter = None,
) -> Page[FriendRequestOut]:
    """Requests this user sent (any status, or `status=`): your own, or anyone's (admin)."""
    caller.ensure_may_see(user_id)
    async with db() as session:
        return await queries.page(
            session, queries.listing(user_id, "sent", request_status), page, caller.user_id
        )


@router.get("/user/{userId}/friends")
async def user_friends(
    user_id: UserId, db: DbDep, caller: CallerDep, page: PageDep
) -> Page[FriendOut]:
    """This user's friends (accepted requests): your own, or anyone's (admin)."""
    caller.ensure_may_see(user_id)
    async with db() as session:
        return await queries.friends(session, user_id, page)


@router.get("/{friendRequestId}", responses=errors(404))
async def get_friend_request(
    friend_request_id: RequestId, db: DbDep, caller: CallerDep
) -> FriendRequestOut:
    """One request, if you sent or received it (or with the admin token); else 404."""
    async with db() as session:
        request = await session.get(FriendRequest, friend_request_id)
        if request is None or not (
            caller.may_see(request.from_user_id) or caller.may_see(request.to_user_id)
        ):
            raise NotFound(f"no friend request {friend_request_id}")
        return await queries.one(session, request, caller.user_id)


@router.delete("/{friendRequestId}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_friend_request(
    friend_request_id: RequestId, friend_requests: FriendRequestsDep, caller: OperatorCallerDep
) -> Response:
    """Delete a request you sent or received (an accepted one: unfriend; a block: unblock)."""
    await friend_requests.delete(friend_request_id, caller.user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _respond(
    friend_requests: FriendRequests,
    db: async_sessionmaker[AsyncSession],
    friend_request_id: int,
    user: User,
    action: str,
    client: ClientInfo,
    report_as_spam: bool = False,
) -> FriendRequestOut:
    request = await friend_requests.respond(
        friend_request_id, user, action, client, report_as_spam=report_as_spam
    )
    async with db() as session:
        return await queries.one(session, request, user.id)


@router.patch("/{friendRequestId}/accept", responses=errors(404, 409))
async def accept_friend_request(
    friend_request_id: RequestId,
    user: CurrentUserDep,
    friend_requests: FriendRequestsDep,
    db: DbDep,
    client: ClientDep,
) -> FriendRequestOut:
    """Accept a pending request sent to you; the sender gets an in-app notification."""
    return await _respond(friend_requests, db, friend_request_id, user, "accept", client)


@router.patch("/{friendRequestId}/reject", responses=errors(404, 409))
async def reject_friend_request(
    friend_request_id: RequestId,
    user: CurrentUserDep,
    friend_requests: FriendRequestsDep,
    db: DbDep,
    client: ClientDep,
) -> FriendRequestOut:
    """Reject a pending request sent to you."""
    return await _respond(friend_requests, db, friend_request_id, user, "reject", client)


@router.patch("/{friendRequestId}/cancel", responses=errors(404, 409))
async def cancel_friend_request(
    friend_request_id: RequestId,
    user: CurrentUserDep,
    friend_requests: FriendRequestsDep,
    db: DbDep,
    client: ClientDep,
) -> FriendRequestOut:
    """Cancel a pending request you sent."""
    return await _respond(friend_requests, db, friend_request_id, user, "cancel", client)


@router.patch("/{friendRequestId}/block", responses=errors(404, 409))
async def block_friend_request(
    friend_request_id: RequestId,
    user: CurrentUserDep,
    friend_requests: FriendRequestsDep,
    db: DbDep,
    client: ClientDep,
    data: Annotated[BlockIn | None, Body()] = None,
) -> FriendRequestOut:
    """Block the sender of a request to you (pending, or an existing friendship); they can't
    send you another until you delete the block. `reportAsSpam` flags the request."""
    report = data.report_as_spam if data else False
    return await _respond(friend_requests, db, friend_request_id, user, "block", client, report)

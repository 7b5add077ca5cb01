"""The inbox of a signed-in user (session token) or a subscriber (the client token their application
signed). Reads made here reach every open tab, like socket reads."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from herald.core.errors import NotFound
from herald.core.pagination import Page, fetch_page, page_of
from herald.core.schemas import CamelModel
from herald.inbox import service as inbox
from herald.inbox.service import Inbox
from herald.notifications.models import HIDDEN_STATUSES, InAppNotification
from herald.subscribers.deps import RecipientDep
from herald.web.deps import DbDep, PageDep, app_state
from herald.web.errors import errors

router = APIRouter(prefix="/api/me/notifications", tags=["inbox"])
NotificationId = Annotated[int, Path(alias="notificationId", ge=1, le=2**31 - 1)]
InboxDep = Annotated[Inbox, app_state("inbox")]


class Tabs(Protocol):
    """Every open tab of a user, wherever it is connected (herald.realtime.server's handlers):
    a read made over HTTP reaches them as a socket read does."""

    async def announce_read(
        self, user_id: int, ids: list[int], unread: int, *, everything: bool
    ) -> None: ...


TabsDep = Annotated[Tabs, app_state("sockets")]


class InboxItem(CamelModel):
    id: int
    type: str
    title: str
    message: str
    data: dict[str, Any]
    priority: str
    status: str
    is_read: bool
    read_at: datetime | None
    delivered_at: datetime | None
    acked_at: datetime | None
    created_at: datetime
    expires_at: datetime


class Marked(CamelModel):
    marked: list[int]
    unread_count: int


class UnreadCount(CamelModel):
    unread_count: int


@router.get("")
async def list_inbox(
    user: RecipientDep,
    db: DbDep,
    page: PageDep,
    unread: Annotated[bool, Query(description="only unread notifications")] = False,
) -> Page[InboxItem]:
    """Your in-app notifications, newest first (expired ones are left out)."""
    model = InAppNotification
    query = (
        select(model)
        .where(model.user_id == user.id, model.status.not_in(HIDDEN_STATUSES))
        .order_by(model.id.desc())
    )
    if unread:
        query = query.where(model.is_read.is_(False))
    async with db() as session:
        rows, total = await fetch_page(session, query, page)
    return page_of([InboxItem.model_validate(n) for n in rows], page, total)


@router.get("/unread-count")
async def unread_count(user: RecipientDep, db: DbDep) -> UnreadCount:
    async with db() as session:
        return UnreadCount(unread_count=await inbox.unread_count(session, user.id))


@router.post("/{notificationId}/read", responses=errors(404))
async def mark_one_read(
    notification_id: NotificationId,
    user: RecipientDep,
    db: DbDep,
    box: InboxDep,
    tabs: TabsDep,
) -> Marked:
    async with db() as session:
        n = await session.get(InAppNotification, notification_id)
    if n is None or n.user_id != user.id:  # someone else's is as absent as a missing one
        raise NotFound(f"no notification {notification_id}")
    return await _mark(box, tabs, user.id, [notification_id])


@router.post("/read-all")
async def mark_all_read(user: RecipientDep, box: InboxDep, tabs: TabsDep) -> Marked:
    return await _mark(box, tabs, user.id, None)


async def _mark(box: Inbox, tabs: Tabs, user_id: int, ids: list[int] | None) -> Marked:
    read = await box.mark_read(user_id, ids)
    await tabs.announce_read(user_id, read.marked, read.unread, everything=ids is None)
    return Marked(marked=read.marked, unread_count=read.unread)

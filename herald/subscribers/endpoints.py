"""`/api/subscribers`: the application's users, by the application's own ids.

Every endpoint takes an API key with the `subscribers` scope (or the admin token)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Annotated, Protocol

from fastapi import APIRouter, Path, Query, Response, status

from herald.apikeys.deps import SubscribersDep
from herald.core.errors import InvalidField
from herald.subscribers import service
from herald.subscribers.schemas import (
    SUBSCRIBER_ID_PATTERN,
    BulkIn,
    BulkOut,
    Deleted,
    SubscriberIn,
    SubscriberList,
    SubscriberOut,
)
from herald.web.deps import DbDep, app_state
from herald.web.errors import errors

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/subscribers",
    tags=["subscribers"],
    dependencies=[SubscribersDep],
    responses=errors(401, 403),
)

ExternalId = Annotated[
    str,
    Path(
        alias="subscriberId",
        min_length=1,
        max_length=255,
        pattern=SUBSCRIBER_ID_PATTERN,
        description="the application's own id for this person",
    ),
]
MAX_PAGE_LIMIT = 500


class Disconnects(Protocol):
    """Ends sockets on whichever server holds them (herald.realtime.sessions.Disconnector)."""

    async def sessions(self, session_ids: Iterable[int]) -> int: ...

    async def user(self, user_id: int) -> int: ...


DisconnectorDep = Annotated[Disconnects, app_state("disconnector")]
RemovalDep = Annotated[service.Removal, app_state("subscriber_removal")]
CURSOR = re.compile(r"[0-9]{1,19}")  # str.isdigit() also takes "²", which int() refuses


@router.put(
    "/{subscriberId}",
    responses={201: {"model": SubscriberOut, "description": "Created"}, **errors(409)},
)
async def put_subscriber(
    subscriber_id: ExternalId, data: SubscriberIn, db: DbDep, response: Response
) -> SubscriberOut:
    """Create (201) or update (200) a subscriber. A field left out keeps its value; `null`
    clears it. An address another subscriber holds answers 409 naming `email`."""
    user, created = await service.upsert(db, subscriber_id, data)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return service.out(user)


@router.get("/{subscriberId}", responses=errors(404))
async def get_subscriber(subscriber_id: ExternalId, db: DbDep) -> SubscriberOut:
    return service.out(await service.get(db, subscriber_id))


@router.delete("/{subscriberId}", responses=errors(404, 409))
async def delete_subscriber(
    subscriber_id: ExternalId, remove: RemovalDep, disconnector: DisconnectorDep
) -> Deleted:
    """Delete a subscriber with their inbox and every notification addressed to them (pending
    ones are never sent); their open sockets are disconnected. Answers what was removed."""
    removed = await remove(subscriber_id)
    await _disconnect(disconnector, removed)
    log.info(
        "subscribers.deleted",
        extra={"userId": removed.user_id, "emails": removed.emails, "inapp": removed.inapp},
    )
    return Deleted(
        deleted=True,
        notifications_removed=removed.emails + removed.inapp,
        emails_removed=removed.emails,
        inapp_removed=removed.inapp,
    )


async def _disconnect(disconnector: Disconnects, removed: service.Removed) -> None:
    """End the deleted subscriber's sockets: those of their sessions, and those a client
    token opened (found through presence)."""
    try:
        await disconnector.sessions(removed.session_ids)
        await disconnector.user(removed.user_id)
    except Exception as exc:  # Redis away: those sockets' next event finds no subscriber
        log.warning("subscribers.disconnect_failed", extra={"error": repr(exc)})


@router.get("")
async def list_subscribers(
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=20, description="`nextCursor` of the page before")
    ] = None,
) -> SubscriberList:
    """Subscribers in the order they were created, `limit` at a time."""
    after = _cursor(cursor)
    rows, next_after = await service.page(db, limit, after)
    return SubscriberList(
        items=[service.out(u) for u in rows],
        next_cursor=str(next_after) if next_after is not None else None,
    )


def _cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not CURSOR.fullmatch(cursor) or int(cursor) > 2**63 - 1:
        raise InvalidField("cursor", "pass the nextCursor of the page before")
    return int(cursor)


@router.post("/bulk", responses=errors(409))
async def bulk_subscribers(data: BulkIn, db: DbDep) -> BulkOut:
    """Create or update up to 1,000 subscribers in one transaction (all or none)."""
    return await service.bulk_upsert(db, data.subscribers)

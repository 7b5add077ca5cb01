"""The generic trigger, `POST /api/notifications`, and one notification's whole record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from herald.core.errors import NotFound
from herald.notifications import records
from herald.notifications.models import Channel, InAppNotification
from herald.notifications.trigger import TriggerIn, TriggerOut, trigger
from herald.web.deps import CallerDep, ClientDep, HeraldDep, TriggerKeyDep
from herald.web.errors import errors

router = APIRouter(prefix="/api", tags=["notifications"])


@router.post("/notifications", status_code=status.HTTP_201_CREATED)
async def create_notifications(
    data: TriggerIn, herald: HeraldDep, client: ClientDep, key: TriggerKeyDep
) -> TriggerOut:
    """Send a notification of any type to one or many recipients by email and/or in-app.
    Called by the application's backend with an API key holding the `trigger` scope (or the
    admin token). Recipients are `{userId}`, `{subscriberId}` (an unknown one is created when
    it comes with an `email`) or `{email}` alone. Answers with one entry per created
    notification (recipient x channel); each is committed before it is queued."""
    return await trigger(herald, data, client, key.key_id)


@router.get(
    "/notifications/{channel}/{notificationId}",
    response_model=records.EmailRecord | records.InAppRecord,
    responses=errors(401, 404),
)
async def show_notification(
    channel: Channel,
    notification_id: Annotated[int, Path(alias="notificationId", ge=1, le=2**31 - 1)],
    herald: HeraldDep,
    caller: CallerDep,
) -> records.EmailRecord | records.InAppRecord:
    """One notification, whole: every field of the seed's schema, the content, and its audit
    trail under `metadata`. The admin token sees any; a user sees their own in-app ones."""
    async with herald.db() as session:
        n = await records.load(session, channel, notification_id)
        # Another user's notification (or any email, for a user) is as absent as a missing one,
        # so ids cannot be probed.
        mine = isinstance(n, InAppNotification) and caller.may_see(n.user_id)
        if n is None or not (caller.is_admin or mine):
            raise NotFound(f"no {channel.value} notification {notification_id}")
        return await records.record(session, n)

"""The generic trigger, `POST /api/notifications`."""

from __future__ import annotations

from fastapi import APIRouter, status

from herald.notifications.trigger import TriggerIn, TriggerOut, trigger
from herald.web.deps import AdminDep, ClientDep, HeraldDep

router = APIRouter(prefix="/api", tags=["notifications"])


@router.post("/notifications", status_code=status.HTTP_201_CREATED, dependencies=[AdminDep])
async def create_notifications(data: TriggerIn, herald: HeraldDep, client: ClientDep) -> TriggerOut:
    """Send a notification of any type to one or many recipients by email and/or in-app.
    Called by the application's backend with the admin token. Answers with one entry per
    created notification (recipient x channel); each is committed before it is queued."""
    return await trigger(herald, data, client)

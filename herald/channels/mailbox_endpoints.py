"""The capture mailbox, read over HTTP: operations endpoints, behind the admin token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from herald.apikeys.deps import AdminDep
from herald.channels.mailbox import CaptureMailbox
from herald.core.errors import NotFound
from herald.web.deps import app_state
from herald.web.errors import errors

router = APIRouter(
    prefix="/api/ops", tags=["operations"], dependencies=[AdminDep], responses=errors(404)
)


async def capture_mailbox(
    mailbox: Annotated[CaptureMailbox | None, app_state("mailbox")],
) -> CaptureMailbox:
    """The mailbox the app was built with; None when EMAIL_HOST is set."""
    if mailbox is None:
        raise NotFound("the capture mailbox is off: EMAIL_HOST is set", code="mailbox_disabled")
    return mailbox


MailboxDep = Annotated[CaptureMailbox, Depends(capture_mailbox)]


@router.get("/mailbox")
async def list_mailbox(mailbox: MailboxDep, limit: int = 50) -> dict[str, Any]:
    """Messages the capture mailbox received, newest first."""
    messages = mailbox.messages()
    return {"total": len(messages), "messages": [m.summary() for m in messages[:limit]]}


@router.get("/mailbox/{message_id}")
async def get_mailbox_message(message_id: str, mailbox: MailboxDep) -> dict[str, Any]:
    message = mailbox.get(message_id)
    if message is None:
        raise NotFound(f"no captured message {message_id}")
    return {
        **message.summary(),
        "headers": message.headers,
        "text": message.text,
        "html": message.html,
    }


@router.delete("/mailbox")
async def clear_mailbox(mailbox: MailboxDep) -> dict[str, int]:
    return {"deleted": mailbox.clear()}

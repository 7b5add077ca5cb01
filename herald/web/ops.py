"""Operations endpoints, behind the admin token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from herald.channels.mailbox import CaptureMailbox
from herald.core.errors import NotFound
from herald.runtime import Herald
from herald.web.deps import AdminDep, HeraldDep
from herald.web.errors import errors

router = APIRouter(
    prefix="/api/ops", tags=["operations"], dependencies=[AdminDep], responses=errors(404)
)


def _mailbox(herald: Herald) -> CaptureMailbox:
    if herald.mailbox is None:
        raise NotFound("the capture mailbox is off: EMAIL_HOST is set", code="mailbox_disabled")
    return herald.mailbox


@router.get("/mailbox")
async def list_mailbox(herald: HeraldDep, limit: int = 50) -> dict[str, Any]:
    """Messages the capture mailbox received, newest first."""
    messages = _mailbox(herald).messages()
    return {"total": len(messages), "messages": [m.summary() for m in messages[:limit]]}


@router.get("/mailbox/{message_id}")
async def get_mailbox_message(message_id: str, herald: HeraldDep) -> dict[str, Any]:
    message = _mailbox(herald).get(message_id)
    if message is None:
        raise NotFound(f"no captured message {message_id}")
    return {
        **message.summary(),
        "headers": message.headers,
        "text": message.text,
        "html": message.html,
    }


@router.delete("/mailbox")
async def clear_mailbox(herald: HeraldDep) -> dict[str, int]:
    return {"deleted": _mailbox(herald).clear()}

"""Registering, listing, rotating and deleting webhook endpoints."""

from __future__ import annotations

import base64
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from herald.core.db import utcnow
from herald.core.errors import NotFound
from herald.notifications.models import FINAL_STATUSES, Status, WebhookDelivery
from herald.webhooks.models import WebhookEndpoint
from herald.webhooks.schemas import WebhookIn

SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def register(session: AsyncSession, data: WebhookIn) -> WebhookEndpoint:
    row = WebhookEndpoint(
        url=data.url,
        events=data.events,
        description=data.description,
        secret=new_secret(),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


async def listed(session: AsyncSession) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
    return list(await session.scalars(query.order_by(WebhookEndpoint.id)))


async def live(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    # FOR NO KEY UPDATE, not FOR UPDATE: a worker recording a failed delivery of this endpoint
    # takes a key-share lock on it (the foreign key check of a delivery row its transaction
    # already changed); FOR UPDATE blocked that while this transaction waited for the delivery
    # row the worker held: a deadlock, and a 500 for the DELETE.
    row = await session.get(WebhookEndpoint, endpoint_id, with_for_update={"key_share": True})
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return row


async def rotate(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    """A new secret, in force for every attempt from now on (the old one stops at once)."""
    row = await live(session, endpoint_id)
    row.secret, row.updated_at = new_secret(), utcnow()
    return row


async def delete(session: AsyncSession, endpoint_id: int) -> WebhookEndpoint:
    """Stop it: its deliveries not yet made are withdrawn (`not_sent`), so their jobs end
    without sending; the row stays, for the deliveries' history."""
    row = await live(session, endpoint_id)
    now = utcnow()
    row.deleted_at = row.updated_at = now
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status.not_in(FINAL_STATUSES),
        )
        .values(status=Status.NOT_SENT, failure_reason="endpoint deleted", updated_at=now)
    )
    return row

"""`/api/ops/webhooks`: the endpoints Herald POSTs its delivery events to (`ops` scope)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, status

from herald.apikeys.deps import AdminDep
from herald.core.db import transaction
from herald.web.deps import DbDep, app_state
from herald.web.errors import errors
from herald.webhooks import service
from herald.webhooks.models import WebhookEndpoint
from herald.webhooks.registry import EndpointCache
from herald.webhooks.schemas import WebhookIn, WebhookList, WebhookOut, WebhookWithSecret

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/ops/webhooks", tags=["webhooks"], dependencies=[AdminDep])
EndpointId = Annotated[int, Path(alias="webhookId", ge=1, le=2**31 - 1)]


def _with_secret(row: WebhookEndpoint) -> WebhookWithSecret:
    return WebhookWithSecret.model_validate(
        {**WebhookOut.model_validate(row).model_dump(), "secret": row.secret}
    )


CacheDep = Annotated[EndpointCache, app_state("webhook_endpoints")]


async def _changed(cache: EndpointCache) -> None:
    """This process sees the change at once; the others within HERALD_WEBHOOK_CACHE_SECONDS."""
    await cache.reload()


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(422))
async def register_webhook(data: WebhookIn, db: DbDep, cache: CacheDep) -> WebhookWithSecret:
    """Register an endpoint for some events. `secret` is in this answer only: keep it to
    verify each delivery's `webhook-signature`."""
    async with transaction(db) as session:
        row = await service.register(session, data)
    await _changed(cache)
    log.info("webhooks.registered", extra={"webhookId": row.id, "events": row.events})
    return _with_secret(row)


@router.get("")
async def list_webhooks(db: DbDep) -> WebhookList:
    """The live endpoints, never their secrets."""
    async with db() as session:
        return WebhookList(
            items=[WebhookOut.model_validate(r) for r in await service.listed(session)]
        )


@router.post("/{webhookId}/rotate-secret", responses=errors(404))
async def rotate_webhook_secret(
    endpoint_id: EndpointId, db: DbDep, cache: CacheDep
) -> WebhookWithSecret:
    """A new secret, answered once; attempts from now on are signed with it."""
    async with transaction(db) as session:
        row = await service.rotate(session, endpoint_id)
    await _changed(cache)
    log.info("webhooks.secret_rotated", extra={"webhookId": endpoint_id})
    return _with_secret(row)


@router.delete("/{webhookId}", responses=errors(404))
async def delete_webhook(endpoint_id: EndpointId, db: DbDep, cache: CacheDep) -> WebhookOut:
    """Stop sending to it; its deliveries not yet made are withdrawn."""
    async with transaction(db) as session:
        row = await service.delete(session, endpoint_id)
    await _changed(cache)
    log.info("webhooks.deleted", extra={"webhookId": endpoint_id})
    return WebhookOut.model_validate(row)

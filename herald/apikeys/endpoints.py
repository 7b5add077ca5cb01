"""`/api/ops/api-keys`: create, list and revoke the keys applications call Herald with."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, status

from herald.apikeys import service
from herald.apikeys.deps import AdminDep
from herald.apikeys.schemas import ApiKeyIn, ApiKeyList, ApiKeyOut, CreatedApiKey
from herald.apikeys.service import KeyCache
from herald.core.db import transaction
from herald.web.deps import DbDep, app_state
from herald.web.errors import errors

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/ops/api-keys", tags=["api keys"], dependencies=[AdminDep])
KeysDep = Annotated[KeyCache, app_state("api_keys")]
KeyId = Annotated[int, Path(alias="keyId", ge=1, le=2**31 - 1)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_api_key(data: ApiKeyIn, db: DbDep, keys: KeysDep) -> CreatedApiKey:
    """A new key with these scopes. `key` is in this answer only: Herald stores its hash."""
    row, key = await service.create_key(db, data.name, data.scopes)
    keys.forget()
    log.info("apikeys.created", extra={"keyId": row.id, "scopes": row.scopes})
    return CreatedApiKey.model_validate({**ApiKeyOut.model_validate(row).model_dump(), "key": key})


@router.get("")
async def list_api_keys(db: DbDep) -> ApiKeyList:
    """The live keys: name, prefix and scopes, never the key."""
    async with db() as session:
        return ApiKeyList(
            items=[ApiKeyOut.model_validate(k) for k in await service.listed(session)]
        )


@router.delete("/{keyId}", responses=errors(404))
async def revoke_api_key(key_id: KeyId, db: DbDep, keys: KeysDep) -> ApiKeyOut:
    """Revoke a key: refused at once on this server, and within a few seconds (the key cache's
    5 s) on every other one."""
    async with transaction(db) as session:
        row = await service.revoke(session, key_id)
    keys.forget()
    log.info("apikeys.revoked", extra={"keyId": key_id})
    return ApiKeyOut.model_validate(row)

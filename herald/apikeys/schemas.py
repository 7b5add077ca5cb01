"""API keys on the wire. The key itself appears once, in the answer that created it."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from herald.apikeys.models import Scope
from herald.core.schemas import CamelInput, CamelModel, OneLine


class ApiKeyIn(CamelInput):
    name: OneLine = Field(min_length=1, max_length=100, description="what the key is for")
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=len(Scope),
        description="trigger (send notifications), subscribers (manage them), read "
        "(notification status and records), ops (everything under /api/ops)",
    )


class ApiKeyOut(CamelModel):
    id: int
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None


class CreatedApiKey(ApiKeyOut):
    key: str = Field(description="shown this once: Herald keeps only its hash")


class ApiKeyList(CamelModel):
    items: list[ApiKeyOut]

"""API keys: what an application's backend holds instead of the one admin token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from herald.core.db import Base, utcnow


class Scope(StrEnum):
    TRIGGER = "trigger"  # POST /api/notifications and the other endpoints that notify
    SUBSCRIBERS = "subscribers"  # subscriber CRUD
    READ = "read"  # notification status and records
    OPS = "ops"  # everything under /api/ops


ALL_SCOPES = frozenset(Scope)


class ApiKey(Base):
    """One key. Only its SHA-256 is stored; `prefix` (public, shown in lists and in the key
    itself) lets a person tell keys apart without ever seeing one again."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

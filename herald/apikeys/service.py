"""Creating, listing and revoking API keys, and knowing who a bearer token is.

Keys look like `hk_<prefix>_<secret>`: 32 random bytes of secret, so they are stored as a plain
SHA-256. A slow password hash (argon2) exists to make guessing a *low-entropy* password costly;
a 256-bit random key cannot be guessed at any hash speed, and a slow hash would cost ~50 ms of
CPU on every request. The prefix is public: lists show it so a person can tell keys apart.

Lookups are cached in-process for `CACHE_SECONDS`, so the trigger's hot path costs no database
query per request. A revocation takes effect at once on the server that made it and within
`CACHE_SECONDS` on every other one (the bound the README states).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.apikeys.models import ALL_SCOPES, ApiKey, Scope
from herald.core import dbfaults
from herald.core.db import transaction, utcnow
from herald.core.errors import NotFound

KEY_PREFIX = "hk_"
CACHE_SECONDS = 5.0
CACHE_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Principal:
    """Who made a request with a bearer credential: the admin token (every scope, no key id)
    or an API key (its id and scopes)."""

    key_id: int | None
    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


ADMIN = Principal(key_id=None, name="admin", scopes=ALL_SCOPES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its public prefix."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


async def create(session: AsyncSession, name: str, scopes: Iterable[Scope]) -> tuple[ApiKey, str]:
    """A new key row (flushed, so it has its id) and the key itself, which is never stored."""
    key, prefix = new_key()
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        scopes=sorted({Scope(s).value for s in scopes}),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row, key


async def listed(session: AsyncSession, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(await session.scalars(query))


async def revoke(session: AsyncSession, key_id: int) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no live API key {key_id}")
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))
    row.revoked_at = utcnow()
    return row


class KeyCache:
    """Bearer token -> Principal, for a few seconds per token (unknown tokens included, so a
    flood of wrong keys costs one query per key per `CACHE_SECONDS`, not one per request)."""

    def __init__(self, db: async_sessionmaker[AsyncSession], admin_token: str) -> None:
        self.db = db
        self.admin_token = admin_token
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def is_admin(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.admin_token.encode())

    async def principal(self, token: str) -> Principal | None:
        """The admin or the live key this token is; None for anything else."""
        if self.is_admin(token):
            return ADMIN
        if not looks_like_key(token):
            return None
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await dbfaults.read(self.db, lambda session: _live_key(session, digest))
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, found)
        return found

    def forget(self) -> None:
        """Drop every cached lookup (after a create or revoke on this server)."""
        self._cache.clear()


async def _live_key(session: AsyncSession, digest: str) -> Principal | None:
    row = await session.scalar(
        select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    )
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, scopes=frozenset(Scope(s) for s in row.scopes))


async def create_key(
    db: async_sessionmaker[AsyncSession], name: str, scopes: Iterable[Scope]
) -> tuple[ApiKey, str]:
    async with transaction(db) as session:
        return await create(session, name, scopes)

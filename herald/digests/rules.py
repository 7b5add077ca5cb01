"""Digest rules: stored per type, and known to the trigger from an in-process cache.

The trigger asks for its type's rule on every request, so the rules are read whole (they are
few: one per digested type) at most once per `HERALD_DIGEST_RULES_CACHE` seconds per process,
never per request. A change takes effect at once on the server that made it, and within that
many seconds on every other one (as API keys do, herald.apikeys.service).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core import dbfaults
from herald.core.db import transaction, utcnow
from herald.digests.models import DigestRule


@dataclass(frozen=True)
class Rule:
    type: str
    window_seconds: int | None
    daily_at: str | None
    group_by: str | None

    @classmethod
    def of(cls, row: DigestRule) -> Rule:
        return cls(row.type, row.window_seconds, row.daily_at, row.group_by)


class RuleCache:
    def __init__(self, db: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        self._rules: dict[str, Rule] = {}
        self._loaded_at = -float("inf")
        self._loading: asyncio.Task[None] | None = None

    async def get(self, kind: str) -> Rule | None:
        """`kind`'s rule, or None: it is not digested."""
        if time.monotonic() - self._loaded_at >= self.ttl:
            if self._loading is None or self._loading.done():
                self._loading = asyncio.create_task(self._load())
            await asyncio.shield(self._loading)  # one read, however many requests wait on it
        return self._rules.get(kind)

    def forget(self) -> None:
        """Read again on the next `get` (a rule just changed here)."""
        self._loaded_at = -float("inf")

    async def _load(self) -> None:
        began = time.monotonic()

        async def query(session: AsyncSession) -> dict[str, Rule]:
            return {r.type: Rule.of(r) for r in await session.scalars(select(DigestRule))}

        self._rules = await dbfaults.read(self.db, query)
        self._loaded_at = began


async def put(db: async_sessionmaker[AsyncSession], rule: Rule) -> Rule:
    try:
        await _put(db, rule)
    except IntegrityError:  # a concurrent PUT created the type's row first: update it
        await _put(db, rule)
    return rule


async def _put(db: async_sessionmaker[AsyncSession], rule: Rule) -> None:
    async with transaction(db) as session:
        row = await session.get(DigestRule, rule.type, with_for_update=True)
        if row is None:
            row = DigestRule(type=rule.type)
            session.add(row)
        row.window_seconds, row.daily_at, row.group_by = (
            rule.window_seconds,
            rule.daily_at,
            rule.group_by,
        )
        row.updated_at = utcnow()


async def get(db: async_sessionmaker[AsyncSession], kind: str) -> Rule | None:
    async with db() as session:
        row = await session.get(DigestRule, kind)
        return Rule.of(row) if row else None


async def remove(db: async_sessionmaker[AsyncSession], kind: str) -> bool:
    async with transaction(db) as session:
        result = await session.execute(delete(DigestRule).where(DigestRule.type == kind))
        return bool(result.rowcount)  # type: ignore[attr-defined]

"""Which endpoints want which events: a per-process cache, so emitting an event nobody
subscribed to costs no database query.

Every process (API servers and workers) keeps the live endpoints in memory for
`HERALD_WEBHOOK_CACHE_SECONDS` (2 s by default). The process that registers, deletes or
changes an endpoint drops its cache at once; every other process reloads within that many
seconds. So an event emitted in the first seconds after a registration may not reach the new
endpoint from another process, and one emitted just after a deletion may still be written for
the deleted endpoint: its delivery then finds the endpoint gone and is not sent. One reload is
one query per process per window, shared by every emit that waits for it, never one per event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.webhooks.models import WebhookEndpoint

log = logging.getLogger(__name__)
ALL_EVENTS = "*"
RETRY_AFTER_FAILURE = 1.0  # seconds: a failed reload serves the last list this long


@dataclass(frozen=True)
class Endpoint:
    id: int
    url: str
    events: frozenset[str]
    secret: str

    def wants(self, kind: str) -> bool:
        return kind in self.events or ALL_EVENTS in self.events


class EndpointCache:
    def __init__(self, db: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        self._by_id: dict[int, Endpoint] = {}
        self._by_event: dict[str, list[Endpoint]] = {}
        self._loaded = False
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()
        self._reloading: asyncio.Task[None] | None = None

    async def matching(self, kind: str) -> Sequence[Endpoint]:
        """The live endpoints subscribed to `kind` (no query while the cache is fresh).

        Callers emit inside their own transactions, so once a list is loaded this never waits
        for a reload: a stale list is served while a reload runs in the background. Waiting
        would hold the caller's write lock (SQLite) while the reload waits for a pooled
        connection that other writers, queued on that lock, hold: a stall until the lock's
        timeout, seen as "database is locked" under a burst of acks."""
        if self._loaded and time.monotonic() >= self._fresh_until:
            self._reload_in_background()
        else:
            await self._ensure_fresh()
        found = self._by_event.get(kind)
        if found is None:
            found = self._by_event[kind] = [e for e in self._by_id.values() if e.wants(kind)]
        return found

    async def get(self, endpoint_id: int) -> Endpoint | None:
        """A live endpoint by id; reloads once when it is not cached (registered elsewhere)."""
        await self._ensure_fresh()
        if endpoint_id not in self._by_id:
            self.forget()
            await self._ensure_fresh()
        return self._by_id.get(endpoint_id)

    def forget(self) -> None:
        """Reload on next use."""
        self._fresh_until = 0.0

    async def reload(self) -> None:
        """Reload now: after a change made by this process (which then sees it at once), and
        at start, so that no emit waits for the first load. Outside any transaction.

        Always a load of its own: a background reload that is running now may have read the
        table before the change committed, and counting it as fresh hid a new endpoint from
        this process for a whole window (its `notification.queued` events were never written)."""
        async with self._lock:
            await self._load_now()

    def _reload_in_background(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(
                self._ensure_fresh(), name="webhook-endpoints-reload"
            )

    async def _ensure_fresh(self) -> None:
        if time.monotonic() < self._fresh_until:
            return
        async with self._lock:  # concurrent emits share one reload
            if time.monotonic() < self._fresh_until:
                return
            await self._load_now()

    async def _load_now(self) -> None:
        """Load under the lock; a failure after the first load serves the last list a while."""
        try:
            rows = await self._load()
        except Exception as exc:
            if not self._loaded:
                raise
            log.warning("webhooks.cache.reload_failed", extra={"error": repr(exc)})
            self._fresh_until = time.monotonic() + RETRY_AFTER_FAILURE
            return
        self._by_id = {e.id: e for e in rows}
        self._by_event = {}
        self._loaded = True
        self._fresh_until = time.monotonic() + self.ttl

    async def _load(self) -> list[Endpoint]:
        async with self.db() as session:
            rows = await session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
            )
            return [
                Endpoint(id=r.id, url=r.url, events=frozenset(r.events), secret=r.secret)
                for r in rows
            ]

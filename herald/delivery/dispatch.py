"""Handing committed notifications to the delivery queues.

The order is what makes "nothing is lost" hold: the caller commits the rows first, then
`Dispatcher.dispatch` enqueues them. A row whose enqueue failed stays `pending` and the
reconciler enqueues it later; enqueueing is idempotent, so doing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.config import Settings
from herald.core.db import transaction, utcnow
from herald.core.group_commit import GroupCall
from herald.delivery.queues import Queues
from herald.notifications.models import Channel, DeliveryState, Status
from herald.telemetry.stages import now_ms
from herald.webhooks.events import QUEUED, of_row

if TYPE_CHECKING:
    from herald.telemetry.service import Telemetry
    from herald.webhooks.events import WebhookEvents

log = logging.getLogger(__name__)


async def _transition(
    session: AsyncSession, n: DeliveryState, from_status: str, **values: Any
) -> None:
    """Set `values` on the row, only if it is still in `from_status`."""
    model = type(n)
    await session.execute(
        update(model)
        .where(model.id == n.id, model.status == from_status)
        .values(**values, updated_at=utcnow())
    )


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        queues: Queues,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queues = queues
        self.telemetry = telemetry
        self.events: WebhookEvents | None = None  # set once both exist (herald.runtime)
        # Concurrent dispatches (the requests of one group commit wake together) share one
        # Redis pipeline for their jobs.
        self._enqueues: GroupCall[tuple[Channel, int, str | None], str] = GroupCall(
            queues.enqueue_many
        )

    async def dispatch(self, notifications: Sequence[DeliveryState], *, by: str = "api") -> None:
        """Enqueue committed notifications; mark those that made it `queued`. `by` says who
        dispatches (`api`, `reconciler`, `replay`, `webhooks`); only `api` has just committed
        the rows. New and replayed ones are announced (`notification.queued`) first, and their
        webhook deliveries enqueued with them."""
        if by in ("api", "replay"):
            notifications = [*notifications, *await self._announce(notifications)]
        committed = now_ms()
        queued: list[tuple[DeliveryState, str]] = []
        failed: list[DeliveryState] = []
        if by == "api":
            for n in notifications:
                self._stage(n, "database", timestamp=committed, status=n.status)
        # The `queue` stage is stamped when the job is sent: a worker may pick it up (and stamp
        # its `worker` stage) before this request hears back from the shared pipeline, and the
        # timeline keeps its stages in order. `enqueueMs` says how long the round trip took.
        sent, begun = now_ms(), time.perf_counter()
        keys = [(n.channel, n.id, n.telemetry_id) for n in notifications]
        try:
            async with asyncio.timeout(self.settings.enqueue_timeout):
                done = await self._enqueues.get(keys) if keys else {}
            missing = [k for k in keys if k not in done]
            if missing:
                raise RuntimeError(f"not enqueued: {missing}")
        except Exception as exc:  # Redis down or slow: the reconciler will enqueue them
            for n in notifications:
                log.warning(
                    "delivery.enqueue.deferred",
                    extra={"channel": n.channel.value, "notificationId": n.id, "error": repr(exc)},
                )
                self._stage(n, "queue", outcome="deferred", by=by, error=repr(exc))
            failed.extend(notifications)
        else:
            enqueue_ms = round((time.perf_counter() - begun) * 1000, 3)
            for n, key in zip(notifications, keys, strict=True):
                queue = done[key]
                self._stage(
                    n,
                    "queue",
                    timestamp=sent,
                    outcome="enqueued",
                    by=by,
                    queue=queue,
                    enqueueMs=enqueue_ms,
                )
                queued.append((n, queue))
        await self._settle(queued, failed)

    async def _announce(self, notifications: Sequence[DeliveryState]) -> list[DeliveryState]:
        """`notification.queued`'s webhook deliveries, committed before the enqueue (so a
        process dying after it still delivers them), or none when nobody subscribed (no
        query). A failure here never holds the notifications back."""
        if self.events is None or not notifications:
            return []
        try:
            if not await self.events.endpoints.matching(QUEUED):
                return []
            events = [
                of_row(QUEUED, n, status=Status.QUEUED, queue=self.queues.tier(n.channel, 0).queue)
                for n in notifications
                if n.channel is not Channel.WEBHOOK
            ]
            if not events:
                return []
            async with transaction(self.db) as session:
                return list(await self.events.stage(session, events))
        except Exception as exc:
            log.warning("webhooks.publish_failed", extra={"event": QUEUED, "error": repr(exc)})
            return []

    async def _settle(
        self, queued: list[tuple[DeliveryState, str]], failed: list[DeliveryState]
    ) -> None:
        """Write what changed: rows (replayed, reconciled) that were not yet `queued` in that
        queue, and new rows whose job Redis refused (back to `pending`)."""
        moved = [(n, q) for n, q in queued if (n.status, n.queue_name) != (Status.QUEUED, q)]
        refused = [n for n in failed if n.status == Status.QUEUED]
        if not moved and not refused:
            return
        async with transaction(self.db) as session:
            for n, queue in moved:
                # Only from `pending`: a fast worker may already have moved it further.
                await _transition(
                    session, n, Status.PENDING, status=Status.QUEUED, queue_name=queue
                )
            for n in refused:
                await _transition(session, n, Status.QUEUED, status=Status.PENDING)
        for n, queue in moved:
            if n.status == Status.PENDING:
                n.status, n.queue_name = Status.QUEUED, queue
        for n in refused:
            n.status = Status.PENDING

    def _stage(
        self, n: DeliveryState, stage: str, *, timestamp: float | None = None, **detail: Any
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.stages.notification(n, stage, timestamp=timestamp, **detail)

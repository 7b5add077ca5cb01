"""Finds notifications whose job is missing and puts them back on their queue.

Two ways a notification can be stored but not queued: its enqueue never happened (Redis was down
when the request committed it, or the process died in between), so it is still `pending`; or
its job vanished (a Redis restarted without persistence), so the row says `queued`/`sending`
but no live job exists. Both are re-enqueued; enqueueing is idempotent, so several workers
reconciling at once cannot create duplicate jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.config import Settings
from herald.core.db import transaction, utcnow
from herald.delivery.dispatch import Dispatcher
from herald.delivery.queues import Queues
from herald.notifications.ladder import job_id
from herald.notifications.models import MODEL_OF, Channel, DeliveryState, InAppNotification, Status

log = logging.getLogger(__name__)
BATCH = 500


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        queues: Queues,
        dispatcher: Dispatcher,
    ) -> None:
        self.settings = settings
        self.db = db
        self.queues = queues
        self.dispatcher = dispatcher
        self.stopping = False

    async def run_forever(self) -> None:
        while not self.stopping:
            try:
                await self.run_once()
            except Exception as exc:  # Redis or the database is away: try again next round
                log.warning("delivery.reconciler.error", extra={"error": repr(exc)})
            await asyncio.sleep(self.settings.reconcile_interval)

    async def _lost(
        self, model: type[DeliveryState], channel: Channel, rows: Sequence[DeliveryState]
    ) -> list[DeliveryState]:
        """The rows with no live job that have not moved on since they were read. Checking
        hundreds of jobs takes a while, and meanwhile a row can be delivered and its finished
        job removed: without the second look such a row was reported lost and re-enqueued."""
        by_queue: dict[str, list[DeliveryState]] = {}
        for n in rows:
            queue = self.queues.tier_of_queue(channel, n.queue_name).queue
            by_queue.setdefault(queue, []).append(n)
        jobless = []
        for queue, waiting in by_queue.items():
            live = await self.queues.live(queue, [job_id(channel, n.id) for n in waiting])
            jobless += [n for n in waiting if job_id(channel, n.id) not in live]
        if not jobless:
            return []
        async with self.db() as session:
            result = await session.execute(
                select(model.id, model.updated_at).where(
                    model.id.in_([n.id for n in jobless]),
                    model.status.in_([Status.QUEUED, Status.SENDING]),
                )
            )
            now = {row_id: updated_at for row_id, updated_at in result}
        return [n for n in jobless if now.get(n.id) == n.updated_at]

    async def run_once(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self.settings.reconcile_grace)
        total = 0
        for channel, model in MODEL_OF.items():
            async with self.db() as session:
                pending = (
                    await session.scalars(
                        select(model)
                        .where(model.status == Status.PENDING, model.created_at < cutoff)
                        .order_by(model.id)
                        .limit(BATCH)
                    )
                ).all()
                in_queue = (
                    await session.scalars(
                        select(model)
                        .where(
                            model.status.in_([Status.QUEUED, Status.SENDING]),
                            model.updated_at < cutoff,
                        )
                        .order_by(model.updated_at)
                        .limit(BATCH)
                    )
                ).all()
            if pending:
                await self.dispatcher.dispatch(pending, by="reconciler")
                total += len(pending)
            for n in await self._lost(model, channel, in_queue):
                tier = self.queues.tier_of_queue(channel, n.queue_name)
                if await self.queues.requeue(
                    channel,
                    n.id,
                    tier=tier.index,
                    telemetry_id=n.telemetry_id,
                    delay_ms=remaining_delay_ms(n.updated_at, tier.delay_ms),
                ):
                    total += 1
                    log.warning(
                        "delivery.reconciler.job_lost",
                        extra={"job": job_id(channel, n.id), "queue": tier.queue},
                    )
        if total:
            log.info("delivery.reconciler.requeued", extra={"count": total})
        expired = await expire_due(self.db, self.queues)
        if expired:
            log.info("delivery.inapp.expired", extra={"count": expired})
        return total


def remaining_delay_ms(since: datetime, delay_ms: int) -> int:
    """What is left of a retry tier's delay counted from the row's last change (its escalation
    or last failure): a job lost while it waited in a retry tier (a Redis restarted without
    persistence) keeps its wait instead of running at once."""
    elapsed = (utcnow() - since).total_seconds() * 1000
    return max(0, int(delay_ms - elapsed))


async def expire_due(db: async_sessionmaker[AsyncSession], queues: Queues) -> int:
    """Notifications nobody received before `expires_at` become `expired` and leave the ladder."""
    now = utcnow()
    async with transaction(db) as session:
        ids = list(
            (
                await session.scalars(
                    select(InAppNotification.id).where(
                        InAppNotification.expires_at <= now,
                        InAppNotification.acked_at.is_(None),
                        InAppNotification.status.in_(
                            [Status.PENDING, Status.QUEUED, Status.FAILED]
                        ),
                    )
                )
            ).all()
        )
        if ids:
            await session.execute(
                update(InAppNotification)
                .where(InAppNotification.id.in_(ids))
                .values(status=Status.EXPIRED, updated_at=now)
            )
    for notification_id in ids:
        await queues.forget(Channel.INAPP, notification_id)
    return len(ids)

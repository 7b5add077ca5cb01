"""Dead letters: notifications the ladder gave up on, kept until a person acts.

A person lists and inspects them, replays them (back to tier 0 with the attempt counter reset;
the history stays, and the replay is recorded as an escalation from the dead-letter queue), or
discards them with a reason (they stay `failed` and leave the queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from herald.core.config import Settings
from herald.core.db import transaction, utcnow
from herald.core.pagination import Page, PageParams, fetch_page, page_of
from herald.core.schemas import CamelModel
from herald.notifications.ladder import ladder
from herald.notifications.models import MODEL_OF, Channel, DeliveryState, Escalation, Status

if TYPE_CHECKING:
    from herald.delivery.dispatch import Dispatcher
    from herald.delivery.queues import Queues


class DeadLetter(CamelModel):
    channel: Channel
    notification_id: int
    type: str
    recipient: str | None
    failure_reason: str | None
    attempts: int
    queue_name: str | None
    failed_at: datetime | None
    created_at: datetime


def _dead(model: type[DeliveryState]) -> Select[DeliveryState]:
    return select(model).where(model.status == Status.FAILED, model.discarded_at.is_(None))


def _as_dead_letter(n: DeliveryState) -> DeadLetter:
    recipient = (
        getattr(n, "recipient_email", None)
        or getattr(n, "recipient_username", None)
        or getattr(n, "url", None)  # a webhook's endpoint
    )
    return DeadLetter(
        channel=n.channel,
        notification_id=n.id,
        type=getattr(n, "type", ""),
        recipient=recipient,
        failure_reason=n.failure_reason,
        attempts=n.attempts,
        queue_name=n.queue_name,
        failed_at=n.failed_at,
        created_at=n.created_at,
    )


@dataclass(eq=False)
class DeadLetters:
    """Lists, replays and discards one channel's dead letters."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    queues: Queues
    dispatcher: Dispatcher

    async def page(
        self, channel: Channel, params: PageParams, *, kind: str | None = None
    ) -> Page[DeadLetter]:
        """Newest first."""
        model = MODEL_OF[channel]
        query = _dead(model).order_by(model.failed_at.desc(), model.id.desc())
        if kind:
            query = query.where(model.type == kind)  # type: ignore[attr-defined]
        async with self.db() as session:
            rows, total = await fetch_page(session, query, params)
        return page_of([_as_dead_letter(n) for n in rows], params, total)

    async def _select(
        self, channel: Channel, ids: Sequence[int] | None, kind: str | None
    ) -> list[DeliveryState]:
        """The dead letters named by id, or all of them (of one type) when ids is None."""
        model = MODEL_OF[channel]
        query = _dead(model)
        if ids is not None:
            query = query.where(model.id.in_(ids))
        if kind:
            query = query.where(model.type == kind)  # type: ignore[attr-defined]
        async with self.db() as session:
            return list((await session.scalars(query.order_by(model.id))).all())

    async def replay(
        self,
        channel: Channel,
        ids: Sequence[int] | None,
        *,
        kind: str | None = None,
        note: str | None = None,
    ) -> list[int]:
        rows = await self._select(channel, ids, kind)
        for row in rows:  # idle jobs of an earlier pass would make the new enqueue a no-op
            await self.queues.forget(channel, row.id)
        tiers = ladder(self.settings, channel)
        replayed: list[DeliveryState] = []
        async with transaction(self.db) as session:
            for row in rows:
                n: DeliveryState | None = await session.get(type(row), row.id, with_for_update=True)
                if n is None or n.status != Status.FAILED or n.discarded_at is not None:
                    continue  # replayed or discarded by someone else meanwhile
                session.add(
                    Escalation(
                        channel=channel.value,
                        notification_id=n.id,
                        from_queue=n.queue_name or tiers[-1].queue,
                        to_queue=tiers[0].queue,
                        timestamp=utcnow(),
                        reason="replay" + (f": {note}" if note else ""),
                        attempts=n.attempts,
                    )
                )
                n.status, n.attempts, n.queue_name = Status.PENDING, 0, None
                n.failed_at = n.failure_reason = None
                replayed.append(n)
        await self.dispatcher.dispatch(replayed, by="replay")
        return [n.id for n in replayed]

    async def discard(
        self,
        channel: Channel,
        ids: Sequence[int] | None,
        *,
        reason: str,
        kind: str | None = None,
    ) -> list[int]:
        rows = await self._select(channel, ids, kind)
        discarded = []
        async with transaction(self.db) as session:
            for row in rows:
                n: DeliveryState | None = await session.get(type(row), row.id, with_for_update=True)
                if n is None or n.status != Status.FAILED or n.discarded_at is not None:
                    continue
                n.discarded_at, n.discard_reason = utcnow(), reason
                discarded.append(n.id)
        for notification_id in discarded:
            await self.queues.forget(channel, notification_id)
        return discarded

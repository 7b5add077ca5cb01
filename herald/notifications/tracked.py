"""Tracking blocks for many owners at once (logins, purchases, friend requests...).

An owning record keeps its notifications' ids; a list of owners needs their blocks in a few
queries, not one query per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from herald.notifications.models import Channel, DeliveryState, EmailNotification, InAppNotification
from herald.notifications.schemas import EmailTracking, InAppTracking, Tracking, tracking


@dataclass
class Tracked:
    blocks: dict[tuple[Channel, int], Tracking]

    def email(self, notification_id: int | None) -> EmailTracking | None:
        block = self.blocks.get((Channel.EMAIL, notification_id or 0))
        return cast(EmailTracking | None, block)

    def inapp(self, notification_id: int | None) -> InAppTracking | None:
        block = self.blocks.get((Channel.INAPP, notification_id or 0))
        return cast(InAppTracking | None, block)


async def load_tracking(
    session: AsyncSession,
    email_ids: Iterable[int | None] = (),
    inapp_ids: Iterable[int | None] = (),
) -> Tracked:
    rows: list[DeliveryState] = []
    for model, ids in ((EmailNotification, email_ids), (InAppNotification, inapp_ids)):
        wanted = sorted({i for i in ids if i is not None})
        if wanted:
            rows.extend(await session.scalars(select(model).where(model.id.in_(wanted))))
    return Tracked(await tracking(session, rows) if rows else {})

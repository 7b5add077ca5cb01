"""Tracking blocks for many owners at once (logins, purchases, friend requests...).

An owning record keeps its notifications' ids; a list of owners needs their blocks in a few
queries, not one query per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from herald.notifications.models import Channel
from herald.notifications.schemas import EmailTracking, InAppTracking, Tracking, tracking_of


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
    wanted = {
        Channel.EMAIL: sorted({i for i in email_ids if i is not None}),
        Channel.INAPP: sorted({i for i in inapp_ids if i is not None}),
    }
    return Tracked(await tracking_of(session, wanted))

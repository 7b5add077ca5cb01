"""Two workers that claim the same rows at once each take a row once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from herald.channels.email import EmailSender
from herald.delivery.accepted import AcceptedOutcomes
from herald.delivery.processor import Processor
from herald.notifications.models import Channel
from herald.runtime import Herald
from tests.conftest import RunningHerald
from tests.test_retry_tiers import notify

# What a claim reads of the channel's sender.
EMAIL = SimpleNamespace(
    channel=EmailSender.channel,
    model=EmailSender.model,
    in_flight_status=EmailSender.in_flight_status,
)


async def queued_emails(herald: RunningHerald, count: int) -> list[int]:
    user = await herald.member()
    return [(await notify(herald, user, ["email"], f"claim {n}"))["email"] for n in range(count)]


def processor(app: Herald) -> Processor:
    return Processor(app.db, app.queues, {}, AcceptedOutcomes(app.redis))


async def claim_all(processor: Processor, app: Herald, ids: list[int]) -> list[Any]:
    tier = app.queues.tier(Channel.EMAIL, 0)
    return await asyncio.gather(*(processor._claim_waiting(EMAIL, i, tier) for i in ids))  # type: ignore[arg-type]


async def test_two_workers_claiming_the_same_rows_at_once_each_take_a_row_once(
    herald_factory: Any,
) -> None:
    """Two processes' claims want the same rows in opposite orders, all at once: each row goes to
    one of them, and none to both."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    ids = await queued_emails(herald, 20)
    first, second = await asyncio.gather(
        claim_all(processor(app), app, ids), claim_all(processor(app), app, ids[::-1])
    )
    one = {n.id for n in first if n is not None}
    other = {n.id for n in second if n is not None}
    assert one | other == set(ids) and not one & other

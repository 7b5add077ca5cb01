"""Two workers that claim the same rows at once each take a row once; a claimed row holds what
the database holds after the claim."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from sqlalchemy import inspect

from herald.channels.email import EmailSender
from herald.delivery.accepted import AcceptedOutcomes
from herald.delivery.processor import Processor
from herald.notifications.models import Channel
from herald.runtime import Herald
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import notify

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


async def test_a_claimed_row_holds_what_the_database_holds_after_the_claim(
    herald_factory: Any,
) -> None:
    """The claim's row is made as the ORM makes the instances it loads (`herald.core.db.loaded`),
    not through the constructor: every column is there as stored, outside any session."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    [nid] = await queued_emails(herald, 1)
    [claimed] = await claim_all(processor(app), app, [nid])
    assert isinstance(claimed, EmailSender.model) and inspect(claimed).transient
    async with app.db() as session:
        stored = await session.get(EmailSender.model, nid)
    columns = [c.key for c in inspect(EmailSender.model).columns]
    assert {k: getattr(claimed, k) for k in columns} == {k: getattr(stored, k) for k in columns}
    assert claimed.status == "sending" and claimed.attempts == 1
    claimed.status = "delivered"  # the processor keeps its copy up to date as it goes
    assert claimed.status == "delivered"

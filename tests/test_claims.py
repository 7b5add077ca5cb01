"""A worker's jobs that start together claim their rows in one statement, each row once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from herald.core import driver
from herald.core.db import table
from herald.delivery.accepted import AcceptedOutcomes
from herald.delivery.processor import Processor
from herald.notifications.models import Channel, EmailNotification, Status
from herald.runtime import Herald
from tests.conftest import RunningHerald
from tests.test_retry_tiers import notify

EMAIL = SimpleNamespace(channel=Channel.EMAIL, model=EmailNotification, in_flight_status="sending")


async def queued_emails(herald: RunningHerald, count: int) -> list[int]:
    user = await herald.member()
    return [(await notify(herald, user, ["email"], f"claim {n}"))["email"] for n in range(count)]


def processor(app: Herald) -> Processor:
    return Processor(app.db, app.queues, {}, AcceptedOutcomes(app.redis))


async def claim_all(processor: Processor, app: Herald, ids: list[int]) -> list[Any]:
    tier = app.queues.tier(Channel.EMAIL, 0)
    return await asyncio.gather(*(processor._claim_waiting(EMAIL, i, tier) for i in ids))  # type: ignore[arg-type]


async def test_jobs_that_start_together_share_one_claim_statement(
    herald_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    ids = await queued_emails(herald, 6)
    async with app.db.begin() as session:  # one was delivered meanwhile: it is not claimed
        t = table(EmailNotification)
        await session.execute(update(t).where(t.c.id == ids[0]).values(status=Status.DELIVERED))
    sent: list[dict[str, Any]] = []
    fetch = driver.fetch

    async def counted(db: Any, statement: Any, params: Any) -> list[driver.Row]:
        sent.append(params)
        return await fetch(db, statement, params)

    monkeypatch.setattr(driver, "fetch", counted)
    worker = processor(app)
    claimed = await claim_all(worker, app, list(reversed(ids)))
    assert [n and n.id for n in reversed(claimed)] == [None, *ids[1:]]
    assert all(n.status == "sending" and n.attempts == 1 for n in claimed[:-1])
    assert [params["nids"] for params in sent] == [sorted(ids)]
    # Claimed rows are mid-attempt now: claiming them again takes none.
    assert await claim_all(worker, app, ids) == [None] * 6


async def test_two_workers_claiming_the_same_rows_at_once_each_take_a_row_once(
    herald_factory: Any,
) -> None:
    """Two processes' batched claims want the same rows in opposite orders: both finish (the rows
    are locked in id order, so neither waits on the other forever) and each row goes to one."""
    herald: RunningHerald = await herald_factory(workers=False)
    app = herald.herald
    ids = await queued_emails(herald, 20)
    first, second = await asyncio.gather(
        claim_all(processor(app), app, ids), claim_all(processor(app), app, ids[::-1])
    )
    one = {n.id for n in first if n is not None}
    other = {n.id for n in second if n is not None}
    assert one | other == set(ids) and not one & other

"""Many deadlines on one timer (herald/core/deadlines.py): what the sockets' pings, read
watchdogs and session expiries run on."""

from __future__ import annotations

import asyncio

from herald.core.deadlines import Deadlines


async def test_each_key_expires_once_in_deadline_order() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(expired.append)
    deadlines.set("late", 0.15)
    deadlines.set("early", 0.05)
    deadlines.set("middle", 0.1)
    await asyncio.sleep(0.3)
    assert expired == ["early", "middle", "late"]
    assert len(deadlines) == 0


async def test_setting_again_moves_and_cancel_forgets() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(expired.append)
    deadlines.set("moved", 0.05)
    deadlines.set("cancelled", 0.05)
    deadlines.set("moved", 0.2)  # later than it was
    deadlines.cancel("cancelled")
    await asyncio.sleep(0.12)
    assert expired == []
    await asyncio.sleep(0.2)
    assert expired == ["moved"]


async def test_an_earlier_deadline_rearms_the_timer_and_expire_may_set_again() -> None:
    expired: list[str] = []

    def again(key: str) -> None:
        expired.append(key)
        if expired.count(key) < 3:
            deadlines.set(key, 0.02)  # as a ping sets the next one

    deadlines: Deadlines[str] = Deadlines(again)
    deadlines.set("far", 10)
    deadlines.set("ping", 0.02)
    await asyncio.sleep(0.3)
    assert expired == ["ping", "ping", "ping"]
    deadlines.cancel("far")


async def test_cancelled_entries_do_not_pile_up() -> None:
    """A socket usually goes long before its session would expire: the heap must not keep an
    entry for every socket that ever came and went."""
    deadlines: Deadlines[int] = Deadlines(lambda _: None)
    for n in range(10_000):
        deadlines.set(n, 3600)
        deadlines.cancel(n)
    deadlines.set(-1, 3600)
    assert len(deadlines) == 1
    assert len(deadlines._heap) < 200

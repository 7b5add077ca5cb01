"""Group commit: concurrent triggers share a transaction; a bad one fails alone; none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, select

from herald.notifications.models import InAppNotification
from herald.notifications.service import new_inapp
from tests.fixtures.herald import RunningHerald

NO_SUCH_USER = 987_654_321


@pytest.fixture
async def herald(herald_factory: Any) -> RunningHerald:
    """No workers: the only commits are the ones under test."""
    return await herald_factory(workers=False)  # type: ignore[no-any-return]


def note(herald: RunningHerald, user_id: int, title: str) -> InAppNotification:
    return new_inapp(
        herald.settings,
        "generic",
        user_id=user_id,
        username=None,
        email=None,
        title=title,
        message="m",
        telemetry_id=None,
    )


def count_commits(herald: RunningHerald) -> list[int]:
    commits: list[int] = []
    event.listen(herald.herald.engine.sync_engine, "commit", lambda _: commits.append(1))
    return commits


async def titles(herald: RunningHerald, prefix: str) -> list[str]:
    async with herald.herald.db() as session:
        query = select(InAppNotification.title).where(InAppNotification.title.like(f"{prefix}%"))
        return sorted(await session.scalars(query))


async def test_concurrent_callers_share_one_transaction(herald: RunningHerald) -> None:
    user = await herald.member()
    commits = count_commits(herald)
    rows = [note(herald, user["userId"], f"gc-{i:02}") for i in range(20)]
    await asyncio.gather(*(herald.herald.group_commit.insert([row]) for row in rows))
    assert len(commits) == 1
    assert all(row.id for row in rows) and len({row.id for row in rows}) == 20
    assert await titles(herald, "gc-") == [f"gc-{i:02}" for i in range(20)]


async def test_a_bad_request_fails_alone(herald: RunningHerald) -> None:
    user = await herald.member()
    good = [[note(herald, user["userId"], f"ok-{i}")] for i in range(3)]
    bad = [note(herald, NO_SUCH_USER, "bad")]  # breaks the foreign key
    outcomes = await asyncio.gather(
        *(herald.herald.group_commit.insert(rows) for rows in [good[0], bad, *good[1:]]),
        return_exceptions=True,
    )
    assert [o is None for o in outcomes] == [True, False, True, True]
    assert "FOREIGN KEY" in str(outcomes[1]).upper()
    assert await titles(herald, "ok-") == ["ok-0", "ok-1", "ok-2"]
    assert await titles(herald, "bad") == []


async def test_a_caller_that_goes_away_does_not_lose_the_batch(herald: RunningHerald) -> None:
    user = await herald.member()
    leaving = asyncio.create_task(
        herald.herald.group_commit.insert([note(herald, user["userId"], "gone-1")])
    )
    staying = herald.herald.group_commit.insert([note(herald, user["userId"], "gone-2")])
    await asyncio.sleep(0)  # both are waiting on the batch now
    leaving.cancel()
    await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving
    # The departed caller's row is written too: the reconciler will enqueue it.
    assert await titles(herald, "gone-") == ["gone-1", "gone-2"]


async def test_triggers_through_the_api_are_grouped(herald: RunningHerald) -> None:
    users = [await herald.member() for _ in range(3)]
    commits = count_commits(herald)

    async def send(i: int) -> Any:
        body = {
            "type": "digest",
            "title": f"api-{i:02}",
            "message": "m",
            "channels": ["inapp"],
            "recipients": [{"userId": users[i % 3]["userId"]}],
        }
        return await herald.http.post("/api/notifications", json=body, headers=herald.admin())

    answers = await asyncio.gather(*(send(i) for i in range(30)))
    assert [a.status_code for a in answers] == [201] * 30
    assert await titles(herald, "api-") == [f"api-{i:02}" for i in range(30)]
    # 30 triggers cost fewer commits than 30 (how few depends on timing: at least one shared).
    assert len(commits) < 30, len(commits)


class TestGroupCall:
    """Concurrent lookups (a trigger's recipients) and enqueues share one call each."""

    async def test_concurrent_callers_share_a_call_and_get_their_own_keys(self) -> None:
        from herald.core.group_commit import GroupCall

        calls: list[set[int]] = []

        async def fetch(keys: set[int]) -> dict[int, str]:
            calls.append(keys)
            await asyncio.sleep(0.01)
            return {k: f"v{k}" for k in keys if k != 99}

        group = GroupCall(fetch, in_flight=1)
        answers = await asyncio.gather(*(group.get([i, 99]) for i in range(10)))
        assert answers == [{i: f"v{i}"} for i in range(10)]
        assert len(calls) < 10 and set().union(*calls) == {*range(10), 99}

    async def test_a_failed_call_fails_its_callers_and_the_next_call_runs(self) -> None:
        from herald.core.group_commit import GroupCall

        failing = True

        async def fetch(keys: set[int]) -> dict[int, int]:
            await asyncio.sleep(0)
            if failing:
                raise ConnectionError("down")
            return {k: k for k in keys}

        group = GroupCall(fetch)
        outcomes = await asyncio.gather(*(group.get([i]) for i in range(3)), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        failing = False
        assert await group.get([7]) == {7: 7}

    async def test_with_a_linger_callers_spread_over_it_share_one_call(self) -> None:
        """Acks arrive one by one; a runner that waits a moment first takes them all."""
        from herald.core.group_commit import GroupCall

        calls: list[set[int]] = []

        async def fetch(keys: set[int]) -> dict[int, int]:
            calls.append(keys)
            return {k: k for k in keys}

        group = GroupCall(fetch, in_flight=2, linger=0.5)

        async def later(i: int) -> dict[int, int]:
            await asyncio.sleep(0.01 * i)
            return await group.get([i])

        answers = await asyncio.gather(*(later(i) for i in range(5)))
        assert answers == [{i: i} for i in range(5)]
        assert calls == [set(range(5))]
        assert await group.get([7]) == {7: 7}  # the runner that found none left no one stuck

    async def test_a_caller_that_stops_waiting_leaves_the_others_served(self) -> None:
        from herald.core.group_commit import GroupCall

        async def fetch(keys: set[int]) -> dict[int, int]:
            await asyncio.sleep(0.05)
            return {k: k for k in keys}

        group = GroupCall(fetch, in_flight=1)
        leaving = asyncio.create_task(group.get([1]))
        staying = asyncio.create_task(group.get([2]))
        await asyncio.sleep(0.01)
        leaving.cancel()
        assert await staying == {2: 2}
        assert await group.get([3]) == {3: 3}  # nobody left stuck behind a finished runner

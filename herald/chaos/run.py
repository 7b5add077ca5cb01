"""One scenario after another on one target, and what each lost, duplicated and failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from herald.chaos import faults
from herald.chaos.faults import Sizes
from herald.chaos.load import Load
from herald.chaos.target import Target

Fault = Callable[[Target, Sizes], Awaitable[str]]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    skip: Callable[[Target], str | None]  # why it cannot run on this target, or None


def _ours(target: Target) -> str | None:
    return None if target.stack else "needs a Herald this command started (no --url)"


def _postgres(target: Target) -> str | None:
    return None if target.is_postgres else "needs PostgreSQL (DATABASE_URL / --database-url)"


def _redis(target: Target) -> str | None:
    if target.stack is None and target.redis_url is None:
        return "needs --redis-url and --allow-redis-restart"
    return None if target.redis_restart_allowed else "an external Redis: --allow-redis-restart"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("worker-killed", faults.kill_worker, _ours),
        Scenario("db-connections-terminated", faults.terminate_connections, _postgres),
        Scenario("redis-restarted-empty", faults.restart_redis, _redis),
        Scenario("api-killed", faults.kill_api, _ours),
    )
}


@dataclass
class Outcome:
    scenario: str
    accepted: int = 0
    lost: int = 0
    duplicated: int | None = None  # None: nothing counts arrivals (no sink)
    errors: int = 0
    undelivered: int = 0  # by the notification records at the end
    seconds: float = 0.0
    note: str = ""
    skipped: bool = False

    @property
    def failed(self) -> bool:
        return self.lost > 0


async def run_all(
    target: Target, names: list[str], sizes: Sizes, say: Callable[[str], None]
) -> list[Outcome]:
    outcomes = []
    for name in names:
        scenario = SCENARIOS[name]
        reason = scenario.skip(target)
        if reason:
            outcomes.append(Outcome(name, note=f"skipped: {reason}", skipped=True))
        else:
            say(f"{name}: running")
            outcomes.append(await run_one(target, scenario, sizes))
        say(f"  {row(outcomes[-1])}")
    return outcomes


async def run_one(target: Target, scenario: Scenario, sizes: Sizes) -> Outcome:
    begun = time.monotonic()
    load = Load(target, sizes.rate)
    loading = asyncio.create_task(load.run(sizes.load_seconds))
    await asyncio.sleep(sizes.load_seconds / 4)
    try:
        note = await scenario.fault(target, sizes)
    finally:
        await loading
    outcome = Outcome(scenario.name, accepted=len(load.accepted), note=note)
    outcome.errors = sum(load.errors.values())
    if load.errors:
        outcome.note += "; errors: " + ", ".join(f"{k} x{v}" for k, v in load.errors.items())
    await _settle(target, load.accepted, sizes, outcome)
    outcome.seconds = round(time.monotonic() - begun, 1)
    return outcome


async def _settle(target: Target, accepted: list[int], sizes: Sizes, outcome: Outcome) -> None:
    """Wait (bounded) until everything accepted has arrived, then count: by the sink what
    arrived and how often, by the records what Herald says it delivered."""
    deadline = time.monotonic() + sizes.drain_seconds
    sink = target.sink
    if sink is not None:
        while time.monotonic() < deadline and not all(sink.arrivals[i] for i in accepted):  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.2)
    statuses = await _statuses(target, accepted, deadline)
    outcome.undelivered = sum(s != "delivered" for s in statuses.values())
    if sink is not None:
        outcome.lost = sum(not sink.arrivals[i] for i in accepted)
        outcome.duplicated = sum(max(0, sink.arrivals[i] - 1) for i in accepted)
    else:
        outcome.lost = outcome.undelivered


async def _statuses(target: Target, ids: list[int], deadline: float) -> dict[int, str]:
    """Each notification's status by its record, `GET /api/ops/dlq/email/{id}` (any email
    notification), waiting until all are delivered or the deadline passes."""
    headers = {"Authorization": f"Bearer {target.admin_token}"}
    statuses: dict[int, str] = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with gate:
                url = f"{target.api_urls[0]}/api/ops/dlq/email/{i}"
                try:
                    async with http.get(url) as r:
                        statuses[i] = (await r.json())["status"] if r.status == 200 else "?"
                except (aiohttp.ClientError, TimeoutError, KeyError):
                    statuses[i] = "?"

        while True:
            await asyncio.gather(*(one(i) for i in ids if statuses.get(i) != "delivered"))
            if time.monotonic() > deadline or all(s == "delivered" for s in statuses.values()):
                return statuses
            await asyncio.sleep(0.5)


HEADER = f"{'scenario':<27}{'accepted':>9}{'lost':>6}{'duplicated':>11}{'errors':>8}{'seconds':>9}"


def row(o: Outcome) -> str:
    if o.skipped:
        return f"{o.scenario:<27}{'-':>9}{'-':>6}{'-':>11}{'-':>8}{'-':>9}  {o.note}"
    dup = "?" if o.duplicated is None else str(o.duplicated)
    return (
        f"{o.scenario:<27}{o.accepted:>9}{o.lost:>6}{dup:>11}{o.errors:>8}{o.seconds:>9.1f}"
        f"  {o.note}" + (f"; records: {o.undelivered} not delivered" if o.undelivered else "")
    )


def table(outcomes: list[Outcome]) -> str:
    return "\n".join([HEADER, *(row(o) for o in outcomes)])

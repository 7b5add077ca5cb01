"""A worker's concurrency bounds the work in flight, not the waiting.

An in-app attempt waits up to HERALD_INAPP_ACK_TIMEOUT for the client's ack; while it waits it
gives its slot back, so a client that never acknowledges does not hold up everybody else's
notifications (with the seed's concurrency of 10, ten such clients used to stall the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bullmq import Queue

from herald.delivery import bullmq_clients
from herald.delivery.bullmq_clients import LeanWorker
from herald.notifications.ladder import job_id
from herald.notifications.models import Channel
from herald.runtime import Herald
from tests.fixtures.herald import RunningHerald, make_settings
from tests.fixtures.notifications import all_delivered, notify
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


async def test_an_attempt_waiting_for_its_ack_leaves_its_slot_to_others(
    herald_factory: Any,
) -> None:
    herald: RunningHerald = await herald_factory(inapp_queue_concurrency=1, inapp_ack_timeout=30)
    silent_user, acking_user = await herald.member(), await herald.member()
    silent, acking = RecordingClient(ack=False), RecordingClient(ack=True)
    for client, user in ((silent, silent_user), (acking, acking_user)):
        await client.connect(herald.url)
        await client.authenticate(user["token"])
    try:
        await notify(herald, silent_user, ["inapp"], "never acknowledged")
        await silent.next("notification:new", timeout=10)  # its attempt now waits for an ack
        for n in range(3):
            sent = time.monotonic()
            await notify(herald, acking_user, ["inapp"], f"meanwhile {n}")
            event = await acking.next("notification:new", timeout=10)
            assert event["title"] == f"meanwhile {n}"
            # Far less than the 30 s the silent client's attempt may still wait.
            assert time.monotonic() - sent < 10
    finally:
        await silent.close()
        await acking.close()


async def test_a_busy_worker_takes_its_next_job_with_the_completion_of_the_last(
    herald_factory: Any, smtp: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completing a job fetches the next one in the same script run (`fetchNext`, as the
    Node.js worker does): a backlog of 20 emails drains through one slot with a handful of
    `moveToActive` runs instead of one per job, and nothing is sent twice. Only the runs that
    brought one of this test's jobs count: on the shared test database the reconciler may
    hand this worker an earlier test's unsent rows too, as it should."""
    fetched: list[str] = []
    plain = LeanWorker.moveToActive

    async def counted(self: LeanWorker, token: str) -> Any:
        job = await plain(self, token)
        if job is not None:
            fetched.append(job.id)
        return job

    monkeypatch.setattr(LeanWorker, "moveToActive", counted)
    api: RunningHerald = await herald_factory(workers=False)
    user = await api.member()
    ids = [(await notify(api, user, ["email"], f"backlog {n}"))["email"] for n in range(20)]
    worker = Herald(
        make_settings(
            tmp_path / "worker",
            database_url=api.settings.effective_database_url,
            redis_url=api.herald.redis_url,
            email_host="127.0.0.1",
            email_port=smtp.port,
            mail_queue_concurrency=1,
        ),
        api=False,
        workers=True,
    )
    await worker.start()
    try:
        await eventually(lambda: all_delivered(worker, ids), timeout=60)
    finally:
        await worker.stop()
    subjects = [m.content for m in smtp.to(user["email"]) if b"backlog" in m.content]
    assert len(subjects) == 20  # each once
    ours = {job_id(Channel.EMAIL, notification) for notification in ids}
    assert len(ours.intersection(fetched)) < 6, fetched


async def test_jobs_that_complete_together_are_finished_in_one_pipeline(
    herald_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of acks wakes its in-app attempts at once: their `moveToFinished` calls go to
    Redis in one pipeline (one round trip), and each job still ends completed."""
    api: RunningHerald = await herald_factory(workers=False)
    name = f"together-{uuid.uuid4().hex[:8]}"
    batches: list[int] = []
    together = LeanWorker._complete_together

    async def counted(self: LeanWorker, completions: set[Any]) -> dict[Any, Any]:
        batches.append(len(completions))
        return await together(self, completions)

    monkeypatch.setattr(LeanWorker, "_complete_together", counted)
    go, started = asyncio.Event(), asyncio.Semaphore(0)

    async def process(job: Any, token: str) -> str:
        started.release()
        await go.wait()
        return "done"

    async with _running(api.herald.redis_url, name, process, concurrency=5) as (queue, _):
        jobs = [await queue.add("probe", {"n": n}) for n in range(5)]
        for _ in jobs:
            await asyncio.wait_for(started.acquire(), 10)
        go.set()
        states = lambda: bullmq_clients.job_states(queue, [j.id for j in jobs])  # noqa: E731
        await eventually(lambda: _all_completed(states))
    assert batches == [5], batches


async def _all_completed(states: Any) -> bool:
    return set(await states()) == {"completed"}


async def test_a_lone_job_costs_two_fetches(
    herald_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that arrives on an idle queue is taken by the fetch its marker wakes; the fetch
    after it first waits on the marker that taking the job left (BullMQ's way), then finds
    nothing: two `moveToActive` runs per job, where going straight to a fetch ran three."""
    api: RunningHerald = await herald_factory(workers=False)
    name = f"lone-{uuid.uuid4().hex[:8]}"
    fetches: list[str | None] = []
    plain = LeanWorker.moveToActive

    async def counted(self: LeanWorker, token: str) -> Any:
        job = await plain(self, token)
        fetches.append(job and job.id)
        return job

    monkeypatch.setattr(LeanWorker, "moveToActive", counted)

    async def process(job: Any, token: str) -> str:
        return "done"

    async with _running(api.herald.redis_url, name, process, concurrency=5) as (queue, made):
        await eventually(lambda: _waiting_on_marker(made))
        fetches.clear()
        for n in range(5):
            job = await queue.add("probe", {"n": n})
            await eventually(functools.partial(_completed, queue, job.id))
            await eventually(lambda: _waiting_on_marker(made))
    assert len(fetches) == 10, fetches
    assert len([f for f in fetches if f]) == 5


async def test_a_backlog_is_fetched_without_waiting_on_the_marker(
    herald_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While fetches keep finding jobs, each is one `moveToActive`: only the job that follows
    an idle spell sends the next fetch through the marker first."""
    api: RunningHerald = await herald_factory(workers=False)
    name = f"backlog-{uuid.uuid4().hex[:8]}"
    waits: list[int] = []
    plain = LeanWorker.waitForJob

    async def counted(self: LeanWorker) -> int:
        waits.append(1)
        return await plain(self)

    monkeypatch.setattr(LeanWorker, "waitForJob", counted)
    go, started = asyncio.Event(), asyncio.Semaphore(0)

    # The waits seen when each job started: once the backlog is all taken the next fetch finds
    # the queue empty, and the one after it rightly waits on the marker again.
    waits_at_start: list[int] = []

    async def process(job: Any, token: str) -> str:
        waits_at_start.append(len(waits))
        bullmq_clients.release_slot()  # as an in-app attempt waiting for its ack does
        started.release()
        await go.wait()
        return "done"

    backlog = [{"name": "probe", "data": {"n": n}} for n in range(10)]
    async with _running(api.herald.redis_url, name, process, concurrency=2, backlog=backlog) as (
        queue,
        _,
    ):
        try:
            for _ in backlog:
                await asyncio.wait_for(started.acquire(), 10)
            # The first fetch's, and the one after its job.
            assert max(waits_at_start) <= 2, waits_at_start
        finally:
            go.set()  # else the worker's close waits for the jobs forever


@contextlib.asynccontextmanager
async def _running(
    redis_url: str,
    name: str,
    process: Any,
    *,
    concurrency: int,
    backlog: list[dict[str, Any]] | None = None,
) -> AsyncIterator[tuple[Queue, LeanWorker]]:
    """A queue (holding `backlog` before the worker starts) and a worker running on it; both
    gone afterwards."""
    queue = Queue(name, {"connection": redis_url})
    if backlog:
        await queue.addBulk(backlog)
    made = bullmq_clients.worker(
        name, process, redis_url, {"concurrency": concurrency, "autorun": False}
    )
    run = asyncio.create_task(made.run())
    try:
        yield queue, made
    finally:
        await made.close()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await queue.obliterate(force=True)
        await queue.close()


async def _completed(queue: Queue, job: str) -> bool:
    return await bullmq_clients.job_states(queue, [job]) == ["completed"]


async def _waiting_on_marker(made: LeanWorker) -> bool:
    return bool(made.waiting) and made.drained

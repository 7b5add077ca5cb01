"""The Redis clients Herald hands BullMQ-Python, and the one place that reaches into how a
BullMQ worker holds them.

Left to itself, BullMQ-Python builds every client from a URL with redis-py's defaults: a 5 s
socket timeout on each connection, the worker's blocking one included, and retries that back
off up to 20 s. A worker waits for work with BZPOPMIN on its queue's marker key for up to its
drain delay (5 s) or until the next delayed job is due (at most 10 s), so every long wait ended
in a read timeout, then the retry's backoff: an idle worker picked a new job up seconds late,
and a job delayed more than ~5 s (every retry tier's default) was never run at all.

So Herald builds the clients: commands keep a timeout, the blocking connection's read timeout
outlasts the longest block BullMQ can ask for, and a dropped connection is retried at once
(`herald.core.redis.quick_retry`) so delivery resumes within a second or two of Redis returning.
BullMQ has no option for a separate blocking client, hence `_use_blocking_client`; if BullMQ
stops waiting on the attribute it sets, tests/delivery/test_retry_tiers.py fails (a 15 s tier
delay that never runs, a quiet worker that wakes late).

Herald also runs its workers with a fetch loop of its own (`LeanWorker.run`). BullMQ-Python's
starts a fetch for every free slot at once: with ten slots and a short queue, nine of them run
the `moveToActive` script for nothing each time one job arrives (counted over a whole 20/s
run, start-up and idle polling included: 2,285 runs of that script for 100 in-app jobs, 279
with this loop), and each turn of its loop waits on the set of all slots' tasks. This one
fetches one job at a time, only when a slot is free, and blocks on the queue's marker only when
the last fetch found nothing, as the Node.js worker does; and, as that worker does, a slot that
completes a job takes the next one in the same script run (`moveToFinished` with fetchNext),
where BullMQ-Python's `processJob` always runs `moveToActive` again; jobs that complete at the
same moment (a batch of in-app acks wakes its attempts together) send their `moveToFinished`
calls in one pipeline. A job that only waits (an in-app attempt waiting for the client's ack)
can give its slot back (`release_slot`), so the concurrency setting bounds the work in flight,
not the waiting; when it completes, it takes a free slot again and, with it, the next job.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from bullmq.redis_connection import RedisConnection
from bullmq.scripts import raw2NextJobData
from bullmq.timer import Timer

from herald.core.group_commit import GroupCall
from herald.core.redis import COMMAND_TIMEOUT, client

# BullMQ's scripts and job parsing expect str answers.
_OPTIONS: dict[str, Any] = {"decode_responses": True}


def command_client(redis_url: str, *, max_connections: int) -> aioredis.Redis:
    """A pooled client for BullMQ's non-blocking commands and scripts."""
    return client(redis_url, max_connections=max_connections, **_OPTIONS)


def queue(name: str, commands: aioredis.Redis) -> Queue:
    return Queue(name, {"connection": commands})


def worker(
    name: str,
    processor: Callable[..., Awaitable[Any]],
    redis_url: str,
    options: dict[str, Any],
) -> Worker:
    """A worker whose commands run on a pool (one connection per job in flight, so concurrent
    jobs do not queue behind each other as on one shared connection) and whose blocking wait
    has a connection of its own that never times out before the block does."""
    commands = command_client(redis_url, max_connections=int(options["concurrency"]) + 2)
    made = LeanWorker(name, processor, {**options, "connection": commands})
    _use_blocking_client(made, blocking_client(redis_url, longest_block(made)))
    return made


async def job_states(made: Queue, job_ids: Sequence[str]) -> list[str]:
    """The BullMQ state of each job ("unknown" for none), in one pipelined round trip.

    `Queue.getJobState` asks for one job per round trip, and its script looks the id up in
    the wait list (LPOS, linear in its length): the reconciler checking a 500-job backlog every
    few seconds cost 500 round trips each time, a few percent of a draining worker's CPU. This
    runs the same script (BullMQ's `getStateV2`, Redis >= 6.0.6) for all of them at once."""
    scripts = made.scripts
    keys = scripts.getKeys(
        [
            "completed",
            "failed",
            "delayed",
            "active",
            "wait",
            "paused",
            "waiting-children",
            "prioritized",
        ]
    )
    get_state = scripts.commands["getStateV2"]
    async with made.client.pipeline(transaction=False) as pipe:
        for job in job_ids:
            await get_state(keys=keys, args=[job, scripts.toKey(job)], client=pipe)
        return [str(state) for state in await pipe.execute()]


def longest_block(made: Worker) -> float:
    """The longest BZPOPMIN timeout this worker can ask for, in seconds."""
    return float(max(made.opts["drainDelay"], made.maximumBlockTimeout))


def blocking_client(redis_url: str, block_seconds: float) -> aioredis.Redis:
    # The read timeout outlasts the block by a command timeout: a wait that runs longer than
    # that is on a dead connection, and is retried on a new one.
    return client(
        redis_url, max_connections=1, socket_timeout=block_seconds + COMMAND_TIMEOUT, **_OPTIONS
    )


def _use_blocking_client(made: Worker, blocking: aioredis.Redis) -> None:
    made.backend.blocking_connection = RedisConnection(blocking)
    made.blockingRedisConnection = made.backend.blocking_connection
    made.bclient = blocking


# The job running in this task may give its worker slot back (see `release_slot`).
_release_slot: contextvars.ContextVar[Callable[[], None]] = contextvars.ContextVar("release_slot")
# How many jobs past its concurrency a worker keeps that only wait (per slot).
WAITING_PER_SLOT = 50


def release_slot() -> None:
    """The running job only waits from now on (an in-app attempt waiting for the client's
    ack): its worker may start another job in its place. The job itself stays active, its
    lock renewed, until it returns. A no-op outside a worker, or when the worker already has
    WAITING_PER_SLOT such jobs per slot."""
    release = _release_slot.get(None)
    if release is not None:
        release()


class _Completion:
    """One job's `moveToFinished` call, as a key of its own (by identity) in a `GroupCall`."""

    __slots__ = ("keys", "args")

    def __init__(self, keys: list[Any], args: list[Any]) -> None:
        self.keys, self.args = keys, args


class LeanWorker(Worker):
    """A BullMQ worker whose fetch loop asks Redis for a job only when a slot is free."""

    async def run(self) -> None:
        self._completions = GroupCall(self._complete_together, in_flight=2)
        await self._ensure_client_names()
        self.lockManager.start()
        self.stalledCheckTimer = Timer(
            self.opts["stalledInterval"] / 1000, self.runStalledJobsCheck, self.emit
        )
        self.running = True
        concurrency = int(self.opts["concurrency"])
        slots = asyncio.Semaphore(concurrency)
        waiting = 0  # jobs that gave their slot back and still run
        after_idle = True  # the last fetch found nothing
        tokens = (f"{self.id}:{n}" for n in itertools.count(1))

        def start(job: Any) -> None:
            """Run the job in a task of its own; while that task holds a slot, each job it
            completes brings the next one with it (see `_process`)."""
            released = False

            def release() -> None:
                nonlocal released, waiting
                if not released and waiting < concurrency * WAITING_PER_SLOT:
                    released, waiting = True, waiting + 1
                    slots.release()

            def finished(task: asyncio.Future[Any]) -> None:
                nonlocal waiting
                self.processing.discard(task)
                if released:
                    waiting -= 1
                else:
                    slots.release()

            async def hold_slot() -> bool:
                """Whether this task holds a slot for a next job: its own, or, when its job gave
                that back, one that is free now (in a backlog of in-app jobs, each completion
                then fetches the next one too, instead of leaving every fetch to the loop)."""
                nonlocal released, waiting
                if released and not slots.locked():
                    await slots.acquire()  # returns at once: a slot is free
                    released, waiting = False, waiting - 1
                return not released

            async def run(job: Any) -> None:
                while job is not None:
                    job = await self._process(job, fetch_next=hold_slot)

            context = contextvars.copy_context()
            context.run(_release_slot.set, release)
            task = asyncio.get_running_loop().create_task(run(job), context=context)
            self.processing.add(task)
            task.add_done_callback(finished)

        try:
            while not self.closing:
                if self.paused:
                    await self.resume_event.wait()
                    continue
                await slots.acquire()
                job = await self._fetch(next(tokens))
                if job is None:
                    slots.release()
                    after_idle = True
                    continue
                if after_idle:
                    # Probably a lone job. Taking it left a marker on the queue (BullMQ's
                    # moveToActive does, for other workers), so the next fetch waits on that marker
                    # first: it returns at once, and one moveToActive finds nothing, not two. Once
                    # fetches keep finding jobs, they go straight to moveToActive, as BullMQ's do.
                    self.drained = True
                after_idle = False
                start(job)
        finally:
            self.running = False
            self.stalledCheckTimer.stop()
            if not self.closing:  # else close() lets the jobs in flight finish
                for task in self.processing:
                    task.cancel()
                await asyncio.gather(*self.processing, return_exceptions=True)
            await self.lockManager.close()

    async def _process(self, job: Any, *, fetch_next: Callable[[], Awaitable[bool]]) -> Any:
        """`Worker.processJob`, except that completing a job whose slot is still held also
        fetches the next one (BullMQ's `moveToFinished` script can, and the Node.js worker
        does): one round trip per job less on a busy queue. Returns that job, or None.
        BullMQ-Python's own `processJob` always asks for none."""
        token = job.token
        for option in ("removeOnComplete", "removeOnFail"):
            if option not in job.opts and option in self.opts:
                job.opts[option] = self.opts[option]
        self.jobs.add((job, token))
        self.lockManager.track_job(job.id, token, int(time.time() * 1000))
        try:
            if job.deferredFailure:
                await job.moveToFailed(UnrecoverableError(job.deferredFailure), token)
                self.emit("failed", job, UnrecoverableError(job.deferredFailure))
                return None
            result = await self.processor(job, token)
            if self.forceClosing:
                return None
            more = not (self.closing or self.paused) and await fetch_next()
            finished = await self._complete(job, result, token, fetch_next=more)
            job.returnvalue, job.attemptsMade = result, job.attemptsMade + 1
            self.emit("completed", job, result)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as err:
            try:
                if not self.forceClosing:
                    await job.moveToFailed(err, token)
                self.emit("failed", job, err)
            except Exception as failure:
                self.emit("error", failure, job)
            return None
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
        if not more:
            return None
        data, job_id, limit_until, delay_until = finished or (None,) * 4
        return await self.nextJobFromJobData(
            data, job_id, limit_until or 0, delay_until or 0, token
        )

    async def _complete(self, job: Any, result: Any, token: str, *, fetch_next: bool) -> Any:
        """`moveToCompleted` (BullMQ's `moveToFinished` script), sent in one pipeline with those
        of the other jobs that complete at the same moment: a batch of in-app acks wakes its
        attempts together. The next job's raw data when `fetch_next` found one, else None."""
        scripts = self.backend.scripts
        keys, args = scripts.moveToCompletedArgs(
            job, result, job.opts.get("removeOnComplete", False), token, fetch_next
        )
        completion = _Completion(keys, args)
        raw = (await self._completions.get([completion]))[completion]
        if isinstance(raw, Exception):
            raise raw
        if isinstance(raw, int) and raw < 0:
            raise scripts.finishedErrors(
                {"code": raw, "jobId": job.id, "command": "moveToFinished", "state": "active"}
            )
        return raw2NextJobData(raw) if raw is not None else None

    async def _complete_together(self, completions: set[_Completion]) -> dict[_Completion, Any]:
        """Each completion's script answer, or the error its command alone met."""
        script = self.backend.scripts.commands["moveToFinished"]
        ordered = list(completions)
        async with self.client.pipeline(transaction=False) as pipe:
            for completion in ordered:
                await script(keys=completion.keys, args=completion.args, client=pipe)
            answers = await pipe.execute(raise_on_error=False)
        return dict(zip(ordered, answers, strict=True))

    async def _fetch(self, token: str) -> Any:
        """The next job, or None (nothing came within the block, or the worker is closing).
        Redis errors are BullMQ's to handle: it reports them and waits `runRetryDelay`."""
        opts = {"delay_in_ms": self.opts["runRetryDelay"], "only_emit_error": True}
        try:
            return await self.retryIfFailed(lambda: self.getNextJob(token), opts)
        except asyncio.CancelledError:
            if self.closing or self.paused:
                return None
            raise

"""Group commit: new rows from concurrent requests written in one transaction.

A trigger's whole database work is inserting its notification rows. Each in its own
transaction, a busy API server spends most of that on transaction overhead (connection
checkout, BEGIN, COMMIT, the session's bookkeeping), and on SQLite its connections queue for
the one write lock in SQLite's sleeping busy handler, which is where the slow tail came from.
Here the first caller starts a writer; callers that arrive while it commits join the next
batch. An idle server adds no wait: a lone request is written at once, as before.

A caller returns only once its rows are committed (ids assigned). If a batch fails, each
caller's rows are retried in a transaction of their own, so one bad request fails alone. A batch
whose connection dropped is written once more, whether it holds one request or many
(herald.core.dbfaults: a commit whose answer was lost is looked up by its first row's id, never
written twice); when the database is away, every caller gets that error (the API's 503) at once.

Only new rows. Batching work that locks existing rows (claiming a notification, recording an
outcome, an acknowledgement) made transactions of one process hold many rows' locks at once,
and two processes' batches then deadlocked on PostgreSQL: 89 times, each costing its one
second `deadlock_timeout`, in a single in-app bench run. New rows lock nothing another batch
wants, so they cannot deadlock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core import dbfaults

log = logging.getLogger(__name__)

Waiter = tuple[Sequence[object], "asyncio.Future[None]"]


class GroupCommit:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self._waiting: list[Waiter] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, rows: Sequence[object]) -> None:
        """Insert `rows` (committed when this returns), together with other callers' rows."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # The writer is a task of its own: a caller that goes away (client disconnect) stops
        # waiting but does not stop the batch. Its rows are still written, and the reconciler
        # enqueues them since that caller never will.
        await done

    async def _write(self) -> None:
        batch: list[Waiter] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_batch(batch)
        finally:  # cancelled (shutdown): nobody may be left waiting forever
            for _, done in batch + self._waiting:
                _settle(done, RuntimeError("the server is shutting down"))

    async def _write_batch(self, batch: list[Waiter]) -> None:
        try:
            await self._commit([row for rows, _ in batch for row in rows])
        except Exception as exc:
            if len(batch) == 1 or dbfaults.is_unavailable(exc):  # each alone would fail again
                for _, done in batch:
                    _settle(done, exc)
                return
            log.warning("group_commit.split", extra={"size": len(batch), "error": repr(exc)})
            for rows, done in batch:  # one by one, so only the bad request fails
                try:
                    await self._commit(rows)
                except Exception as own:
                    _settle(done, own)
                else:
                    _settle(done, None)
            return
        for _, done in batch:
            _settle(done, None)

    async def _commit(self, rows: Sequence[object]) -> None:
        async def insert(session: AsyncSession) -> None:
            await _insert(session, rows)

        async def landed(session: AsyncSession) -> bool:
            # All rows or none: one is enough. Its id was assigned at the flush before COMMIT.
            if not rows:
                return True
            first = rows[0]
            model = type(first)
            found = await session.scalar(select(model.id).where(model.id == first.id))  # type: ignore[attr-defined]
            return found is not None

        await dbfaults.write(self.db, insert, landed=landed)


async def _insert(session: AsyncSession, rows: Sequence[object]) -> None:
    """Insert new ORM objects with Core: one multi-row `INSERT ... RETURNING id` per table and
    set of given columns, the ids set on the objects (before COMMIT, so `landed` can look the
    first one up). The session's unit of work (identity map, state tracking, flush planning)
    cost more CPU than the statement; these objects are written once and never updated here.
    Columns left unset get their Python defaults from Core, as the ORM would have applied."""
    groups: dict[tuple[Table, tuple[str, ...]], list[object]] = {}
    for row in rows:
        table: Table = row.__table__  # type: ignore[attr-defined]
        given = row.__dict__
        # The primary key always comes from the sequence, also when a retried batch's first
        # attempt already set one.
        keys = tuple(k for k in _columns(table) if k in given)
        groups.setdefault((table, keys), []).append(row)
    connection = await session.connection()
    for (table, keys), group in groups.items():
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        values = [{k: row.__dict__[k] for k in keys} for row in group]
        result = await connection.execute(statement, values)
        for row, new_id in zip(group, result.scalars(), strict=True):
            row.id = new_id  # type: ignore[attr-defined]


_COLUMNS: dict[Table, tuple[str, ...]] = {}


def _columns(table: Table) -> tuple[str, ...]:
    if table not in _COLUMNS:
        _COLUMNS[table] = tuple(c.key for c in table.columns if not c.primary_key)
    return _COLUMNS[table]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GroupCall(Generic[K, V]):
    """Work by key from concurrent requests done in one call: one query for their lookups, one
    Redis pipeline for their enqueues.

    The first caller starts a runner; callers that arrive while its call runs share the next
    one. Each caller's keys are handled after it asked (a lookup never answers from a cache),
    so it is as fresh as a call of its own; an idle server adds no wait. `fetch` gets the union
    of the keys and returns a value for each key it found or did; a failed call fails every
    caller of that batch. A caller that stops waiting (a timeout) leaves the batch running."""

    def __init__(
        self,
        fetch: Callable[[set[K]], Awaitable[dict[K, V]]],
        *,
        in_flight: int = 2,
        linger: float = 0.0,
    ) -> None:
        self.fetch = fetch
        # Calls at once: one would make every caller wait out the call before its own, a
        # round trip of queueing at each step of a request; a few keep the batching.
        self.in_flight = in_flight
        # Seconds a runner waits before it takes its batch, so that more callers share each
        # call: only for work whose answer nobody is kept waiting for (see `Inbox._ack_batches`).
        self.linger = linger
        self._waiting: list[tuple[set[K], asyncio.Future[dict[K, V]]]] = []
        self._runners: set[asyncio.Task[None]] = set()

    async def get(self, keys: Iterable[K]) -> dict[K, V]:
        wanted = set(keys)
        done: asyncio.Future[dict[K, V]] = asyncio.get_running_loop().create_future()
        self._waiting.append((wanted, done))
        if len(self._runners) < self.in_flight:
            self._runners.add(asyncio.create_task(self._run()))
        found = await done
        return {k: found[k] for k in wanted if k in found}

    async def _run(self) -> None:
        batch: list[tuple[set[K], asyncio.Future[dict[K, V]]]] = []
        try:
            while self._waiting:
                if self.linger:
                    await asyncio.sleep(self.linger)
                    if not self._waiting:  # another runner took them meanwhile
                        break
                batch, self._waiting = self._waiting, []
                keys: set[K] = set().union(*(wanted for wanted, _ in batch))
                try:
                    found = await self.fetch(keys)
                except Exception as exc:
                    for _, done in batch:
                        _settle_any(done, error=exc)
                else:
                    for _, done in batch:
                        _settle_any(done, found)
                batch = []
        finally:
            # In the same step as the loop's last look at `_waiting` (no await between), so a
            # caller that comes after finds this runner gone and starts one.
            self._runners.discard(asyncio.current_task())
            # Cancelled (shutdown): nobody may be left waiting forever.
            for _, done in batch:
                _settle_any(done, error=RuntimeError("the server is shutting down"))
            if not self._runners:
                for _, done in self._waiting:
                    _settle_any(done, error=RuntimeError("the server is shutting down"))


def _settle_any(
    done: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)

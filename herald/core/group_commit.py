"""Group commit: short pieces of database work from concurrent callers in one transaction.

A trigger inserts its notification rows; a delivery attempt claims its row and later records
the outcome. Each in its own transaction, a busy process spends most of that on transaction
overhead (connection checkout, BEGIN, COMMIT, the session's bookkeeping), and on SQLite its
connections queue for the one write lock in SQLite's sleeping busy handler, which is where
the slow tail came from. Here the first caller starts a writer; callers that arrive while it
commits join the next batch. An idle process adds no wait: a lone caller runs at once.

A caller returns only once its work is committed (ids assigned). If a batch fails, each
caller's work is run again in a transaction of its own, so one bad caller fails alone. Work
must therefore be database statements only: nothing outside the session that a rollback
would not undo.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.core.db import transaction

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]


@dataclass
class _Waiter:
    work: Work
    done: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self._waiting: list[_Waiter] = []
        self._writer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` on a session shared with other callers; its result once committed."""
        waiter = _Waiter(work)
        self._waiting.append(waiter)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        # The writer is a task of its own: a caller that goes away (client disconnect) stops
        # waiting but does not stop the batch, so its work is still committed.
        return await waiter.done

    async def insert(self, rows: Sequence[object]) -> None:
        async def add(session: AsyncSession) -> None:
            session.add_all(rows)

        await self.run(add)

    async def _write(self) -> None:
        batch: list[_Waiter] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._write_batch(batch)
        finally:  # cancelled (shutdown): nobody may be left waiting forever
            for waiter in batch + self._waiting:
                _settle(waiter, error=RuntimeError("the process is shutting down"))

    async def _write_batch(self, batch: list[_Waiter]) -> None:
        try:
            async with transaction(self.db) as session:
                results = [await waiter.work(session) for waiter in batch]
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            log.warning("group_commit.split", extra={"size": len(batch), "error": repr(exc)})
            for waiter in batch:  # one by one, so only the bad caller fails
                try:
                    async with transaction(self.db) as session:
                        result = await waiter.work(session)
                except Exception as own:
                    _settle(waiter, error=own)
                else:
                    _settle(waiter, result)
            return
        for waiter, result in zip(batch, results, strict=True):
            _settle(waiter, result)


def _settle(waiter: _Waiter, result: Any = None, *, error: BaseException | None = None) -> None:
    if waiter.done.done():
        return  # its caller went away
    if error is None:
        waiter.done.set_result(result)
    else:
        waiter.done.set_exception(error)

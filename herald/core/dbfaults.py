"""Database faults: a dropped connection is retried once where that is safe, and a database that
is really away is told apart from a bad statement, so the API answers 503 rather than 500.

A connection can drop at any moment: PostgreSQL restarted or failed over, `pg_terminate_backend`,
a network blip. The pool's pre-ping replaces connections that died while idle; `read` and `write`
cover the ones that die while in use. Running a transaction again is safe when its first run
cannot have landed:

- a read: always;
- a write whose connection broke before COMMIT was sent: the server rolled it back;
- a write whose connection broke *during* COMMIT may have landed or not. `landed` asks a fresh
  connection (for new rows: is the first one's id there? ids come from a sequence, so nobody
  else has it); the write runs again only when it did not land, and succeeds when it did.

One retry only: a second drop in a row means the database is away, and the caller is better
served by a quick 503 and `Retry-After` than by a request that hangs on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]

# What a connection that broke under a statement raises, somewhere in the exception's chain.
# InternalClientError: asyncpg's protocol was left mid-operation by the drop ("cannot switch to
# state ..."), seen when the rollback after a terminated statement ran on the dead connection.
_BROKEN = (
    asyncpg.PostgresConnectionError,  # SQLSTATE 08: connection does not exist, failure, ...
    asyncpg.OperatorInterventionError,  # SQLSTATE 57: admin shutdown, cannot connect now
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.InternalClientError,
    ConnectionError,  # reset, refused, aborted
)
_DRIVERS = ("asyncpg", "sqlalchemy", "aiosqlite", "sqlite3")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_dropped(exc: BaseException) -> bool:
    """The connection broke under the statement (as opposed to: the statement was refused)."""
    if isinstance(exc, sa.DBAPIError) and exc.connection_invalidated:
        return True
    return any(isinstance(e, _BROKEN) for e in _chain(exc))


def is_unavailable(exc: BaseException) -> bool:
    """The database is unreachable, dropped the connection, or (SQLite) stayed locked past its
    busy timeout: the same request may well succeed in a moment."""
    if isinstance(exc, sa.OperationalError | sa.TimeoutError | sa.InterfaceError):
        return True  # SQLite locked or unopenable; no pooled connection free in time; closed
    if isinstance(exc, sa.SQLAlchemyError | asyncpg.PostgresError | asyncpg.InterfaceError):
        return is_dropped(exc) or any(
            isinstance(e, asyncpg.TooManyConnectionsError | asyncpg.CannotConnectNowError)
            for e in _chain(exc)
        )
    # Connecting: SQLAlchemy lets asyncpg's OSError (refused, timed out, unknown host) through
    # unwrapped; it is the database's only when the driver raised it.
    return isinstance(exc, OSError) and _raised_by_driver(exc)


def _raised_by_driver(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


async def read(maker: async_sessionmaker[AsyncSession], query: Work[T]) -> T:
    """Run a read-only `query` (one statement: it runs outside a transaction); once more on a
    fresh connection if the first one dropped."""

    async def run() -> T:
        async with maker() as session:
            await outside_a_transaction(session)
            return await query(session)

    return await read_once_more(run)


async def read_once_more(run: Callable[[], Awaitable[T]]) -> T:
    """A read that takes a connection of its own each time it runs: run once more if the
    connection dropped under it."""
    try:
        return await run()
    except Exception as exc:
        if not is_dropped(exc):
            raise
        log.warning("db.retry", extra={"phase": "read", "error": repr(exc)})
    return await run()


async def outside_a_transaction(session: AsyncSession) -> bool:
    """Run the session's statements each on its own, for work that is one statement.

    On PostgreSQL a lone statement in a transaction costs a BEGIN and a COMMIT or ROLLBACK, two
    round trips for nothing (asyncpg's autocommit mode skips both). On SQLite a BEGIN costs no
    round trip, and the session keeps its usual transaction. Returns whether each statement
    now commits on its own (PostgreSQL)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return True
    return False


async def write(
    maker: async_sessionmaker[AsyncSession], work: Work[T], *, landed: Work[bool] | None = None
) -> T:
    """Run `work` in a transaction and commit it; run it once more if the connection dropped
    where that is safe (see the module docstring). `landed` tells whether a commit whose answer
    was lost took effect; without it such a write is not retried."""
    for attempt in (1, 2):
        committing = False
        try:
            async with maker() as session, session.begin():
                result = await work(session)
                await session.flush()
                committing = True  # from here on the server may commit whatever we hear
            return result
        except Exception as exc:
            if attempt == 2 or not is_dropped(exc):
                raise
            if committing:
                if landed is None:
                    raise
                if await read(maker, landed):
                    log.warning("db.commit_landed", extra={"error": repr(exc)})
                    return result
            log.warning(
                "db.retry",
                extra={"phase": "commit" if committing else "transaction", "error": repr(exc)},
            )
    raise AssertionError("unreachable: the second attempt returns or raises")

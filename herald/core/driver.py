"""The delivery path's hottest statements run on the pooled connection's asyncpg driver.

SQLAlchemy's execution path (the session, the compiled-cache lookup, the execution context, the
cursor adapter, the Result) cost more CPU than the statement: 2,000 prepared UPDATE ...
RETURNING on the bench machine took ~390 µs of CPU each through an AsyncSession and ~175 µs
through asyncpg on the same pooled connection (docs/benchmarks.md). A worker sends two such
statements per email and an API server one per batch of acks, so Core statements that are
built once (claims, outcomes, acks) are compiled here once for asyncpg and then sent by asyncpg
itself, which keeps its own prepared statements. SQLAlchemy still owns the connection: it comes
from the engine's pool (pinged when idle), goes back to it, and is invalidated if it broke. It
is taken as the pool's raw connection rather than through an `AsyncConnection`, whose
Connection object, extra greenlet switch and task per close cost ~55 µs of CPU per statement
more (231 -> 175 µs for an UPDATE ... RETURNING, docs/benchmarks.md). Checkout, statement and
check-in run in one greenlet: SQLAlchemy's asyncio layer starts a greenlet for each awaited
call, and on CPython 3.11 each new greenlet maps and unmaps a 16 KiB frame stack of its own
(an mmap, a munmap and a page fault).

Only for statements whose values asyncpg encodes as they are (ints, strings, timezone-aware
datetimes, None, lists of those) and whose results need no SQLAlchemy type processing (asyncpg
decodes JSON with the codec SQLAlchemy's dialect registers on each connection; timestamps come
back aware): SQLAlchemy's bind and result processors are not applied. On SQLite the same
statement runs through a session, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Select, Update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.util import await_only, greenlet_spawn

from herald.core import dbfaults
from herald.core.db import note_dropped

Statement = Insert | Update | Select[Any]


class Row(dict[str, Any]):
    """A result row by column name, also as attributes (as SQLAlchemy's rows are read)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in their positional order ($1, $2, ...)
    constants: Mapping[str, Any]  # values the statement carries itself (literals, IN lists)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[n] if n in params else self.constants[n] for n in self.names]


@functools.lru_cache(maxsize=256)
def _compiled(statement: Statement, dialect: Dialect) -> _Compiled:
    # Constant IN lists render as one parameter per value (so the SQL never changes); the
    # caller's parameters get a stand-in while the expanded form is worked out.
    compiled = statement.compile(dialect=dialect)
    given = {name: None for name, bind in compiled.binds.items() if bind.required}
    expanded = compiled.construct_expanded_state(given)
    return _Compiled(expanded.statement, tuple(expanded.positiontup or ()), expanded.parameters)


def engine_of(db: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    engine = db.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    return engine


def on_postgres(db: async_sessionmaker[AsyncSession]) -> bool:
    return engine_of(db).dialect.name == "postgresql"


async def fetch(
    db: async_sessionmaker[AsyncSession], statement: Statement, params: Mapping[str, Any]
) -> list[Row]:
    """Run one statement on its own (autocommit on PostgreSQL, a transaction of its own on
    SQLite) and return its rows."""
    engine = engine_of(db)
    if engine.dialect.name != "postgresql":
        async with db() as session:
            rows = [Row(row._mapping) for row in await session.execute(statement, params)]
            await session.commit()
        return rows
    compiled = _compiled(statement, engine.dialect)
    sql, args = compiled.sql, compiled.args(params)

    def run() -> list[Any]:
        # The pool's calls into the async driver (connecting, pinging, closing an overflow
        # connection) need the greenlet's context, as the statement does.
        connection = engine.sync_engine.raw_connection()
        try:
            asyncpg_connection = connection.driver_connection
            assert asyncpg_connection is not None
            return await_only(asyncpg_connection.fetch(sql, *args))
        except BaseException as exc:
            if dbfaults.is_dropped(exc):  # not back into the pool, and check its siblings
                connection.invalidate(exc if isinstance(exc, Exception) else None)
                note_dropped(engine)
            raise
        finally:
            connection.close()

    records = await greenlet_spawn(run)
    return [Row(record.items()) for record in records]


async def read(
    db: async_sessionmaker[AsyncSession], statement: Statement, params: Mapping[str, Any]
) -> list[Row]:
    """`fetch` for a read: once more on a fresh connection if the first one dropped."""
    return await dbfaults.read_once_more(lambda: fetch(db, statement, params))

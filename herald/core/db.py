"""Database plumbing: the declarative base, the async engine, sessions and migrations.

One code path serves PostgreSQL (asyncpg) and SQLite (aiosqlite); the only dialect-specific
lines are the SQLite pragmas that make it safe to share between processes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import DateTime, MetaData, Table, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use herald.core.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def create_engine(url: str, busy_timeout: float = 30.0) -> AsyncEngine:
    """`busy_timeout`: seconds a SQLite writer waits for the write lock before giving up (the
    API then answers 503); PostgreSQL waits on row locks as long as it takes."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout})
        event.listen(
            engine.sync_engine, "connect", partial(_sqlite_pragmas, int(busy_timeout * 1000))
        )
        return engine
    # Up to 20 connections stay open: past `pool_size` each one is closed as soon as it is
    # returned, and under load a new asyncpg connection per transaction cost more than the
    # transaction (profiled: SSL negotiation and type introspection on every connect).
    engine = create_async_engine(url, pool_size=20, max_overflow=10)
    ping_when_idle(engine)
    return engine


# A pooled connection unused for longer than this is pinged before it is handed out.
IDLE_BEFORE_PING = 5.0


def ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only if it sat idle, or if a drop was seen since it
    was returned, not on every checkout.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and asyncpg's ping is a transaction
    of its own (BEGIN, an empty statement, ROLLBACK): three round trips before each of the hot
    path's transactions. A connection in steady use has just proved itself; one that sat idle
    may have been dropped by the server or a restart. A connection that breaks while in use
    fails its statement once, and its caller retries (dbfaults) on another one. A restart or
    `pg_terminate_backend` drops every connection at once: SQLAlchemy then discards the pool's
    older connections by itself, but a statement sent through the driver (herald.core.driver)
    bypasses that, so the driver notes its drops (`note_dropped`) and the pooled connections
    that were idle at that moment are pinged before use: otherwise the retry could be handed
    another dead connection and fail as well.
    """
    pool = engine.sync_engine

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None:
            return
        if time.monotonic() - idle_since < IDLE_BEFORE_PING and idle_since > _last_drop(pool):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool replaces it and tries again
            raise DisconnectionError(f"idle connection is gone: {exc!r}") from exc


# When each engine last saw a connection drop under a statement (time.monotonic()).
_drops: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def note_dropped(engine: AsyncEngine) -> None:
    """A connection of `engine` dropped under a statement sent through the driver: the pool's
    idle ones may be gone too, so each is pinged before its next use."""
    _drops[engine.sync_engine] = time.monotonic()


def _last_drop(sync_engine: Any) -> float:
    return _drops.get(sync_engine, float("-inf"))


def _sqlite_pragmas(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer work at once, also across processes on one machine;
    # busy_timeout makes a second writer wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


M = TypeVar("M")


def table(model: type[Any]) -> Table:
    """A mapped class's table, for plain statements on a hot path (the ORM's bulk UPDATE and
    flush cost more than the SQL they send)."""
    return cast(Table, model.__table__)


def loaded(model: type[M], row: Mapping[str, Any]) -> M:
    """An instance of `model` holding a row read by a plain statement, made as the ORM makes
    the instances it loads: its values set at once, outside any session. The constructor sets
    each attribute through the ORM's instrumentation (events, history): 41 against 3 µs for a
    27-column row, per job on a worker's hot path."""
    instance = model.__mapper__.class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(row)
    return cast(M, instance)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block ends normally and rolls back otherwise."""
    async with maker() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def run_migrations(url: str) -> None:
    """Bring the schema to the newest revision. Blocking: call it outside the event loop."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


async def run_migrations_async(url: str) -> None:
    await asyncio.to_thread(run_migrations, url)

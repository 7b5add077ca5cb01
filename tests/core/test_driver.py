"""Statements sent through the pooled connection's asyncpg driver (herald.core.driver) read as
they do through a session, and a connection that broke under one is not handed out again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import greenlet
import pytest
from sqlalchemy import (
    JSON,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from herald.core import dbfaults, driver
from herald.core.db import UTCDateTime, create_engine, create_sessionmaker

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def things() -> Table:
    return Table(
        f"things_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("status", String(16)),
        Column("data", JSON),
        Column("at", UTCDateTime),
    )


def claim(t: Table) -> Any:
    """Like the worker's claim: a constant IN list, bind parameters, RETURNING every column."""
    return (
        update(t)
        .where(t.c.id == bindparam("nid"), t.c.status.not_in(["done", "gone"]))
        .values(status="busy", at=bindparam("now"))
        .returning(*t.c)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, postgres_url: str | None, tmp_path: Path) -> Any:
    if request.param == "postgresql" and not postgres_url:
        pytest.skip("HERALD_TEST_DATABASE_URL not set")
    url = postgres_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path}/t.db"
    engine = create_engine(url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_rows_read_as_through_a_session(db: Any) -> None:
    t = things()
    async with db.begin() as session:
        await session.run_sync(lambda s: t.create(s.connection()))
        await session.execute(
            t.insert(),
            [
                {"id": 1, "status": "new", "data": {"a": [1, "x"]}, "at": NOW},
                {"id": 2, "status": "done", "data": {}, "at": NOW},
            ],
        )
    rows = await driver.fetch(db, claim(t), {"nid": 1, "now": NOW})
    assert rows == [{"id": 1, "status": "busy", "data": {"a": [1, "x"]}, "at": NOW}]
    assert rows[0].data == {"a": [1, "x"]} and rows[0].at.tzinfo is not None
    assert await driver.fetch(db, claim(t), {"nid": 2, "now": NOW}) == []  # "done": not in
    async with db() as session:  # committed on its own
        assert (
            await session.execute(text(f"SELECT status FROM {t.name} WHERE id = 1"))
        ).scalar() == "busy"


async def test_a_connection_that_broke_under_a_statement_is_not_handed_out_again(
    postgres_url: str | None,
) -> None:
    if not postgres_url:
        pytest.skip("HERALD_TEST_DATABASE_URL not set")
    engine = create_engine(postgres_url)
    db = create_sessionmaker(engine)
    t = things()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(t.create)
            await conn.execute(t.insert(), [{"id": 1, "status": "new", "data": {}, "at": NOW}])
        await driver.fetch(db, claim(t), {"nid": 1, "now": NOW})  # the pool now holds one
        async with engine.connect() as conn:  # the same pooled connection: end its backend
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
        other = create_engine(postgres_url)
        async with other.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await other.dispose()
        with pytest.raises(Exception) as broken:
            await driver.fetch(db, claim(t), {"nid": 1, "now": NOW})
        assert dbfaults.is_dropped(broken.value), broken.value
        # Invalidated, not pooled: the next statement gets a new connection.
        assert await driver.fetch(db, claim(t), {"nid": 1, "now": NOW}) != []
    finally:
        await engine.dispose()


async def test_connections_go_back_to_the_pool_past_its_size_and_when_cancelled(
    postgres_url: str | None,
) -> None:
    """Past `pool_size` a returned connection is closed, which needs the async driver; a
    statement cancelled while it runs still returns its connection."""
    if not postgres_url:
        pytest.skip("HERALD_TEST_DATABASE_URL not set")
    name = f"herald-test-{uuid.uuid4().hex[:8]}"
    settings = {"application_name": name}
    engine = create_async_engine(
        postgres_url, pool_size=1, max_overflow=4, connect_args={"server_settings": settings}
    )
    db = create_sessionmaker(engine)
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)

    async def backends() -> int:
        other = create_async_engine(postgres_url, poolclass=NullPool)
        async with other.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            count = (await conn.execute(query, {"name": name})).scalar_one()
        await other.dispose()
        return int(count)

    try:
        slow = select(func.pg_sleep(0.2).label("slept"))
        rows = await asyncio.gather(*(driver.fetch(db, slow, {}) for _ in range(5)))
        assert [len(r) for r in rows] == [1] * 5
        # All back; the four past the pool's size closed, the one it keeps idle in it.
        assert (pool.checkedout(), pool.checkedin()) == (0, 1)
        assert await backends() == 1
        stuck = asyncio.create_task(driver.fetch(db, select(func.pg_sleep(30)), {}))
        await asyncio.sleep(0.5)
        assert pool.checkedout() == 1
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert pool.checkedout() == 0
        assert await driver.fetch(db, select(func.pg_sleep(0).label("slept")), {}) != []
    finally:
        await engine.dispose()


async def test_a_statement_starts_one_greenlet(postgres_url: str | None) -> None:
    """Each greenlet SQLAlchemy starts costs CPython 3.11 a 16 KiB frame stack of its own (an
    mmap and a munmap): checkout, statement and check-in share one."""
    if not postgres_url:
        pytest.skip("HERALD_TEST_DATABASE_URL not set")
    engine = create_engine(postgres_url)
    db = create_sessionmaker(engine)
    t = things()
    started: list[greenlet.greenlet] = []  # held, so that no two share an id

    def trace(event: str, args: Any) -> None:
        target = args[1]
        if event == "switch" and target.parent is not None and target not in started:
            started.append(target)  # a greenlet, not the main one, seen for the first time

    try:
        async with engine.begin() as conn:
            await conn.run_sync(t.create)
            await conn.execute(t.insert(), [{"id": 1, "status": "new", "data": {}, "at": NOW}])
        await driver.fetch(db, claim(t), {"nid": 1, "now": NOW})  # connected and pooled
        previous = greenlet.settrace(trace)
        try:
            for _ in range(5):
                assert await driver.fetch(db, claim(t), {"nid": 1, "now": NOW}) != []
        finally:
            greenlet.settrace(previous)
        assert len(started) == 5, started
    finally:
        await engine.dispose()

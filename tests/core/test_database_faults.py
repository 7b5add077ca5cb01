"""A database blip never answers 500: a dropped connection is retried once (never writing a row
twice), and a database that is really away answers 503 with `Retry-After`.

The faults are real: PostgreSQL backends terminated with `pg_terminate_backend`, a reply lost
on the wire (a TCP proxy in front of the real server), PostgreSQL out of reach, a SQLite file
held locked by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.util import await_only

from herald.notifications.models import InAppNotification
from tests.fixtures.herald import RunningHerald
from tests.fixtures.tcp_proxy import TcpProxy

TERMINATE_ALL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def postgres_only(stack: dict[str, Any]) -> str:
    if not stack:
        pytest.skip("a PostgreSQL fault")
    return str(stack["database_url"])


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def proxied(stack: dict[str, Any]) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the test's PostgreSQL."""
    postgres_only(stack)
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


def through(proxy: TcpProxy, url: str) -> str:
    """The database URL with its host:port replaced by the proxy's."""
    scheme, rest = url.split("://", 1)
    credentials, _, path = rest.partition("@")
    return f"{scheme}://{credentials}@127.0.0.1:{proxy.port}/{path.split('/', 1)[1]}"


async def trigger(herald: RunningHerald, user_id: int, title: str) -> httpx.Response:
    return await herald.http.post(
        "/api/notifications",
        headers=herald.admin(),
        json={"recipients": [{"userId": user_id}], "type": "x", "title": title, "message": "m"},
    )


async def rows_titled(herald: RunningHerald, title: str) -> int:
    async with herald.herald.db() as session:
        query = select(func.count()).where(InAppNotification.title == title)
        return int(await session.scalar(query) or 0)


class TestDroppedConnection:
    @pytest.mark.parametrize("when", ["before_cursor_execute", "after_cursor_execute"])
    async def test_a_request_whose_connection_drops_mid_transaction_succeeds_once(
        self, herald_factory: Any, stack: dict[str, Any], when: str
    ) -> None:
        """The backend is terminated just before the INSERT runs, or just after it (so the
        COMMIT meets a dead connection): the trigger answers 201 and writes one row."""
        url = postgres_only(stack)
        herald = await herald_factory(workers=False)
        user = await herald.member()
        title = f"drop-{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(asyncpg_dsn(url))
        killed: list[int] = []

        def terminate(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if killed or not statement.startswith("INSERT INTO inapp_notifications"):
                return
            pid = conn.connection.dbapi_connection.driver_connection.get_server_pid()
            # Run from inside SQLAlchemy's greenlet: the statement waits until the backend is
            # gone, so the fault lands exactly here.
            await_only(admin.execute("SELECT pg_terminate_backend($1)", pid))
            killed.append(pid)

        engine = herald.herald.engine.sync_engine
        event.listen(engine, when, terminate)
        try:
            response = await trigger(herald, user["userId"], title)
        finally:
            event.remove(engine, when, terminate)
            await admin.close()
        assert killed, "the fault was injected"
        assert response.status_code == 201, response.text
        assert await rows_titled(herald, title) == 1

    async def test_a_commit_whose_answer_is_lost_is_not_written_twice(
        self, herald_factory: Any, stack: dict[str, Any], proxied: TcpProxy
    ) -> None:
        """COMMIT reaches PostgreSQL and lands, but the connection is cut before its answer
        gets back: the row is found by its id, not written again."""
        herald = await herald_factory(
            workers=False, database_url=through(proxied, stack["database_url"])
        )
        user = await herald.member()
        title = f"lost-{uuid.uuid4().hex[:8]}"
        proxied.lose_reply_after(b"COMMIT")
        response = await trigger(herald, user["userId"], title)
        assert proxied.lost_replies == 1
        assert response.status_code == 201, response.text
        assert await rows_titled(herald, title) == 1
        assert response.json()["notifications"][0]["notificationId"] > 0


class TestDatabaseAway:
    async def test_postgres_out_of_reach_answers_503_with_retry_after(
        self, herald_factory: Any, stack: dict[str, Any], proxied: TcpProxy
    ) -> None:
        herald = await herald_factory(
            workers=False, database_url=through(proxied, stack["database_url"])
        )
        user = await herald.member()
        await proxied.stop()  # connections cut, new ones refused
        away = await trigger(herald, user["userId"], "away")
        assert away.status_code == 503, away.text
        assert int(away.headers["retry-after"]) >= 1
        assert away.json()["error"]["code"] == "database_unavailable"
        assert away.headers["x-request-id"]  # passed through the middleware like any answer
        session = await herald.http.get("/api/me/notifications", headers=user["auth"])
        assert session.status_code == 503  # a read (the token lookup) too

        await proxied.start()  # the database is back: no restart of Herald needed
        back = await trigger(herald, user["userId"], "back")
        assert back.status_code == 201, back.text

    async def test_sqlite_locked_answers_503_with_retry_after(
        self, herald_factory: Any, stack: dict[str, Any]
    ) -> None:
        if stack:
            pytest.skip("a SQLite fault")
        herald = await herald_factory(workers=False, db_busy_timeout=0.5)
        user = await herald.member()
        path = herald.settings.effective_database_url.split("///", 1)[1]
        holder = sqlite3.connect(path, timeout=5, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            locked = await trigger(herald, user["userId"], "locked")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert locked.status_code == 503, locked.text
        assert locked.headers["retry-after"]
        assert locked.json()["error"]["code"] == "database_unavailable"
        assert (await trigger(herald, user["userId"], "unlocked")).status_code == 201


async def test_three_blips_five_seconds_apart_answer_no_5xx(
    herald_factory: Any, stack: dict[str, Any]
) -> None:
    """Steady triggers while every connection of the database is terminated three times, 5 s
    apart: every trigger answers 201 and every one has exactly its row."""
    url = postgres_only(stack)
    herald = await herald_factory(workers=False)
    user = await herald.member()
    title = f"blip-{uuid.uuid4().hex[:8]}"
    statuses: Counter[int] = Counter()

    async def one() -> None:
        statuses[(await trigger(herald, user["userId"], title)).status_code] += 1

    async def blips() -> None:
        admin = await asyncpg.connect(asyncpg_dsn(url))
        try:
            for _ in range(3):
                await asyncio.sleep(2.5)
                await admin.execute(TERMINATE_ALL)
                await asyncio.sleep(2.5)
        finally:
            await admin.close()

    blipping = asyncio.create_task(blips())
    sent: list[asyncio.Task[None]] = []
    while not blipping.done():
        sent.append(asyncio.create_task(one()))
        await asyncio.sleep(0.02)
    await asyncio.gather(*sent, blipping)
    assert set(statuses) == {201}, statuses
    assert await rows_titled(herald, title) == statuses[201]

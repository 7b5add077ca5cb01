"""Fixtures that start real things: Herald on a real port, a real SMTP server, real databases.

Every Herald test runs on two stacks:
- `embedded`: SQLite and an embedded redis-server child process, exactly what `herald serve`
  uses with nothing configured;
- `services`: PostgreSQL and an external Redis, when HERALD_TEST_DATABASE_URL and
  HERALD_TEST_REDIS_URL are set (`.ci/run` sets them when those services answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from herald.core.config import Settings
from herald.core.redis import free_port
from herald.runtime import Herald
from herald.server.app import create_app
from herald.server.http import server_config

ADMIN_TOKEN = "test-admin-token"
PG_URL = os.environ.get("HERALD_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("HERALD_TEST_REDIS_URL")


# --- A hung test fails alone -------------------------------------------------------------------
# Every test shares one event loop (the session's). pytest-timeout's signal (300 s, the backstop)
# interrupts whatever runs at that moment, the loop itself included, and leaves it unusable:
# every later test then errors in its set-up. So a test's body is cancelled inside the loop
# first, which fails that test with its stack and lets its fixtures stop Herald as usual.
# The signal times the test function alone (`timeout_func_only`): fixtures bound their own waits
# (a Herald's start-up and shutdown), and a signal inside pytest's fixture teardown can leave the
# fixture half finalized: every later test using it then errors in set-up, and the Herald it held
# keeps running, its workers' commands counted by later tests.
TEST_BODY_TIMEOUT = 200.0
STARTUP_TIMEOUT = 60.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    body = getattr(item, "obj", None)
    if not inspect.iscoroutinefunction(body):
        return (yield)

    @functools.wraps(body)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        # The stacks are taken just before the deadline: once cancelled, the test's own
        # stack no longer shows what it was waiting for.
        stacks: list[str] = []
        loop = asyncio.get_running_loop()
        snapshot = loop.call_later(TEST_BODY_TIMEOUT - 1, lambda: stacks.append(dump_tasks()))
        deadline = asyncio.timeout(TEST_BODY_TIMEOUT)
        try:
            async with deadline:
                return await body(*args, **kwargs)
        except TimeoutError:
            if not deadline.expired():  # the test's own wait timed out: its error as it is
                raise
            raise AssertionError(
                f"the test ran past {TEST_BODY_TIMEOUT:.0f} s:\n" + "".join(stacks)
            ) from None
        finally:
            snapshot.cancel()

    item.obj = bounded  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        item.obj = body  # type: ignore[attr-defined]


# --- A real SMTP server that can be told to fail ------------------------------------------------
@dataclass
class SmtpSink:
    """An aiosmtpd server in the test's event loop. `fail_with` makes it refuse messages with
    that SMTP reply (e.g. "451 4.3.0 try later", "550 5.1.1 no such user")."""

    port: int = 0
    messages: list[Envelope] = field(default_factory=list)
    fail_with: str | None = None
    delay: float = 0.0  # seconds each message takes to accept, to keep jobs in flight
    # Awaited after a message is accepted and before the 250 reply goes out: a fault to inject
    # at the moment the channel has taken a message.
    before_reply: Callable[[], Awaitable[None]] | None = None
    refusals: list[Envelope] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def refused(self) -> int:
        return len(self.refusals)

    def refused_to(self, address: str) -> list[Envelope]:
        """Refusals of one recipient: on the shared PostgreSQL, an earlier test's unsent rows
        may be delivered (to this sink) by this test's reconciler, as they should be."""
        return [m for m in self.refusals if address in m.rcpt_tos]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_with:
            self.refusals.append(envelope)
            return self.fail_with
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(envelope)
        self.arrived.set()
        if self.before_reply:
            await self.before_reply()
        return "250 2.0.0 accepted"

    def to(self, address: str) -> list[Envelope]:
        return [m for m in self.messages if address in m.rcpt_tos]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 20) -> list[Envelope]:
        async def _wait() -> list[Envelope]:
            while len(self.to(address)) < count:
                self.arrived.clear()
                await self.arrived.wait()
            return self.to(address)

        return await asyncio.wait_for(_wait(), timeout)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    yield sink
    server.close()


# --- Stacks ------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A throwaway database on the PostgreSQL server `server_url` names, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str | None]:
    """A throwaway database on the PostgreSQL server under test, dropped at the end."""
    if not PG_URL:
        yield None
        return
    async with scratch_database(PG_URL, "herald_test") as url:
        yield url


@pytest.fixture(params=["embedded", "services"])
async def stack(request: pytest.FixtureRequest, postgres_url: str | None) -> dict[str, Any]:
    """Settings that select the stack; empty means the embedded default."""
    if request.param == "embedded":
        return {}
    if not (postgres_url and REDIS_URL):
        pytest.skip("HERALD_TEST_DATABASE_URL and HERALD_TEST_REDIS_URL not set")
    # Queues and rows left by an earlier test must not leak into this one: its reconciler
    # would take the earlier test's undelivered rows for lost jobs and deliver them here.
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    await empty_tables(postgres_url)
    return {"database_url": postgres_url, "redis_url": REDIS_URL}


async def empty_tables(url: str) -> None:
    """Every table of the schema emptied, the migrations' record kept."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL lock_timeout = '10s'"))  # fail, not hang
            names = (
                await conn.scalars(
                    text(
                        "SELECT quote_ident(tablename) FROM pg_tables"
                        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ).all()
            if names:
                await conn.execute(text(f"TRUNCATE {', '.join(names)} CASCADE"))
    finally:
        await engine.dispose()


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_token": ADMIN_TOKEN,
        "port": free_port(),
        "server_id": f"test-{uuid.uuid4().hex[:6]}",
        "mailbox_port": 0,
        "backoff_delay": 20,
        "retry_1_delay": 200,
        "retry_2_delay": 200,
        "inapp_retry_1_delay": 200,
        "inapp_retry_2_delay": 200,
        "log_level": "warning",
        # Tests sign many users up from one address; the rate-limit tests set their own.
        "rate_limit_signup": 10_000,
        "rate_limit_login": 10_000,
        "rate_limit_reset": 10_000,
    }
    base.update(overrides)
    return Settings(**base)


# --- Herald on a real port --------------------------------------------------------------------
@dataclass
class RunningHerald:
    herald: Herald
    settings: Settings
    url: str
    http: httpx.AsyncClient

    async def signup(self, **fields: Any) -> dict[str, Any]:
        name = fields.pop("username", None) or f"u{uuid.uuid4().hex[:10]}"
        body = {"username": name, "email": f"{name}@example.com", "password": "s3cret-pass"}
        body.update(fields)
        response = await self.http.post("/api/signups", json=body)
        assert response.status_code == 201, response.text
        return {**response.json(), "password": body["password"]}

    async def login(self, user: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(
            "/api/logins", json={"email": user["email"], "password": user["password"]}
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def member(self, **fields: Any) -> dict[str, Any]:
        """A signed-up user with a session: the signup's fields plus `token` and `auth`."""
        user = await self.signup(**fields)
        session = await self.http.post(
            "/api/session", json={"email": user["email"], "password": user["password"]}
        )
        assert session.status_code == 201, session.text
        token = session.json()["sessionToken"]
        return {**user, "token": token, "auth": bearer(token)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_herald(
    settings: Settings, *, workers: bool = True
) -> tuple[RunningHerald, uvicorn.Server, asyncio.Task[None]]:
    app = create_app(settings, workers=workers)
    herald: Herald = app.other_asgi_app.state.herald  # type: ignore[attr-defined]
    config = server_config(app, settings, graceful_seconds=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()  # raises what made start-up fail
                await asyncio.sleep(0.02)
    except TimeoutError:
        stacks = dump_tasks()
        task.cancel()
        raise AssertionError("Herald did not start:\n" + stacks) from None
    url = f"http://127.0.0.1:{settings.port}"
    running = RunningHerald(herald, settings, url, httpx.AsyncClient(base_url=url, timeout=30))
    return running, server, task


@pytest.fixture
async def herald_factory(
    tmp_path: Path, stack: dict[str, Any], smtp: SmtpSink
) -> AsyncIterator[Any]:
    """Start Herald (API + workers) with extra settings; everything stops after the test."""
    started: list[tuple[RunningHerald, uvicorn.Server, asyncio.Task[None]]] = []

    async def start(workers: bool = True, **overrides: Any) -> RunningHerald:
        options = {"email_host": "127.0.0.1", "email_port": smtp.port, **stack, **overrides}
        settings = make_settings(tmp_path / f"data{len(started)}", **options)
        started.append(await start_herald(settings, workers=workers))
        return started[-1][0]

    yield start
    for running, server, task in reversed(started):
        await running.http.aclose()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 50)
        except TimeoutError:
            raise AssertionError("Herald did not shut down:\n" + dump_tasks()) from None


@pytest.fixture
async def herald(herald_factory: Any) -> RunningHerald:
    return await herald_factory()  # type: ignore[no-any-return]


async def eventually(check: Any, timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll an async check until it returns something truthy; fail with its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def source_digest(code: Any) -> str:
    """A short digest of a library function's source: a test that holds it fails when the
    library changes the function that Herald's copy or adapter stands in for."""
    return hashlib.sha256(inspect.getsource(code).encode()).hexdigest()[:16]


def dump_tasks() -> str:
    """Every pending asyncio task with the chain of awaits it is suspended in: what a hung
    test or shutdown is waiting for. (`Task.print_stack` shows only a suspended task's
    outermost coroutine, so the chain is followed through `cr_await` here.)"""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"{task!r}")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)

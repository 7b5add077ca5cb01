"""What the faults are put to: a fresh local Herald, or a running one on this machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from herald.bench.sink import Sink
from herald.bench.stack import BenchStack

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# What the local Herald changes from the defaults, and why: every fault must heal within the
# run's time bound, and a default that waits minutes would only measure the wait.
CHAOS_SETTINGS = {
    "HERALD_JOB_LOCK_MS": "2000",  # a SIGKILLed worker's jobs run again after ~2 s, not 30
    "HERALD_STALLED_INTERVAL_MS": "1000",
    "HERALD_RECONCILE_INTERVAL": "1",  # rows whose jobs an emptied Redis lost: queued again
    "HERALD_RECONCILE_GRACE": "1",
    "HERALD_BACKOFF_DELAY": "200",  # an attempt that failed in a fault is retried in time
    "RETRY_1_DELAY": "1000",
    "RETRY_2_DELAY": "1000",
}


class ChaosError(RuntimeError):
    """A run that cannot be made as asked; the message says why."""


@dataclass
class Target:
    api_urls: list[str]  # replaced in place when a killed server is started again
    admin_token: str
    database_url: str | None  # its PostgreSQL, to terminate connections on
    redis_url: str | None  # an external Redis; None: the embedded one of `stack`
    redis_restart_allowed: bool
    stack: BenchStack | None = None  # a Herald this command started, parts of which it may kill
    sink: Sink | None = None  # the SMTP server the target sends to, counting what arrives
    started: list[str] = field(default_factory=list)

    @property
    def is_postgres(self) -> bool:
        return bool(self.database_url and self.database_url.startswith("postgres"))


def ensure_local(url: str, what: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise ChaosError(f"{what} must be on this machine (127.0.0.1 or localhost), not {host}")


@contextlib.asynccontextmanager
async def local(
    work_dir: Path, *, database_url: str | None, redis_url: str | None, allow_redis_restart: bool
) -> AsyncIterator[Target]:
    """A fresh Herald as the bench starts one (two `herald api`, one `herald worker`), sending
    its email to a sink of ours; everything it started is stopped on the way out."""
    for url, what in ((database_url, "DATABASE_URL"), (redis_url, "REDIS_URL")):
        if url:
            ensure_local(url, what)
    sink = Sink(track_ids=True)
    stack = BenchStack(
        work_dir, database_url=database_url, redis_url=redis_url, smtp_port=await sink.start()
    )
    stack.env.update(CHAOS_SETTINGS)
    try:
        await stack.start()
        apis = await asyncio.gather(stack.api("api1"), stack.api("api2"), stack.worker("worker1"))
        yield Target(
            api_urls=[f"http://127.0.0.1:{p.port}" for p in apis[:2]],
            admin_token=stack.admin_token,
            database_url=stack.env.get("DATABASE_URL"),
            redis_url=redis_url,
            redis_restart_allowed=allow_redis_restart or redis_url is None,
            stack=stack,
            sink=sink,
        )
    finally:
        await stack.stop()
        await sink.close()


@contextlib.asynccontextmanager
async def running(
    url: str,
    token: str,
    *,
    database_url: str | None,
    redis_url: str | None,
    allow_redis_restart: bool,
    sink_port: int | None,
) -> AsyncIterator[Target]:
    """A Herald already running on this machine. Its processes are not ours to kill; with
    `sink_port`, a sink listens there (point the deployment's EMAIL_HOST/EMAIL_PORT at it)."""
    for given, what in (
        (url, "--url"),
        (database_url, "--database-url"),
        (redis_url, "--redis-url"),
    ):
        if given:
            ensure_local(given, what)
    sink = None
    if sink_port:
        sink = Sink(track_ids=True)
        await sink.start(sink_port)
    try:
        yield Target(
            [url.rstrip("/")], token, database_url, redis_url, allow_redis_restart, sink=sink
        )
    finally:
        if sink is not None:
            await sink.close()

"""A whole Herald on this machine for one scenario: its own data folder (SQLite, embedded Redis)
or a scratch PostgreSQL database, `herald api` and `herald worker` processes as in production,
and an SMTP sink that accepts everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from herald.accounts.models import Session, User
from herald.bench.agent import raise_fd_limit
from herald.core.config import load_settings
from herald.core.db import utcnow
from herald.core.redis import free_port
from herald.core.security import hash_token, new_token
from herald.runtime import Herald

# What the bench changes from Herald's defaults, and why (the report prints these).
BENCH_SETTINGS = {
    # Each request's stage timeline stays in Redis this long (s); 900 s at 1,000 req/s would be
    # about a gigabyte of Redis for the bench alone.
    "HERALD_TELEMETRY_TTL": "60",
    # One request log line per trigger at 1,000/s is the terminal's bottleneck, not Herald's.
    "HERALD_LOG_LEVEL": "warning",
    "HERALD_RATE_LIMIT_SIGNUP": "0",
    "HERALD_RATE_LIMIT_LOGIN": "0",
    "HERALD_RATE_LIMIT_RESET": "0",
    # Sockets are opened in bursts of thousands.
    "HERALD_PRESENCE_HEARTBEAT": "5",
}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def rss_bytes(self) -> int:
        """Resident memory now (VmRSS), from /proc."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{self.name}: no VmRSS")

    @property
    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


class StackError(RuntimeError):
    pass


class BenchStack:
    def __init__(
        self,
        work_dir: Path,
        *,
        database_url: str | None,
        redis_url: str | None,
        smtp_port: int,
        profile_dir: Path | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.profile_dir = profile_dir
        self._profilers: list[subprocess.Popen[bytes]] = []
        self.admin_token = secrets.token_urlsafe(24)
        self.server_database = database_url
        self.database_name: str | None = None
        self.env = {
            **os.environ,
            **BENCH_SETTINGS,
            "HERALD_DATA_DIR": str(work_dir),
            "HERALD_ADMIN_TOKEN": self.admin_token,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp_port),
            "HERALD_EMAIL_SECURITY": "none",
        }
        for name in ("DATABASE_URL", "REDIS_URL"):
            self.env.pop(name, None)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.herald: Herald | None = None
        self.procs: list[Proc] = []

    async def start(self) -> None:
        """Database and Redis up, migrated and empty; no server or worker yet."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.server_database:
            self.env["DATABASE_URL"] = await self._scratch_database(self.server_database)
        # This process reads its settings from the environment, as the children do.
        os.environ.update(self.env)
        for name in ("DATABASE_URL", "REDIS_URL"):
            if name not in self.env:
                os.environ.pop(name, None)
        self.herald = Herald(load_settings(), api=False, workers=False)
        await self.herald.start()
        if "REDIS_URL" in self.env:  # a Redis of the bench's own (see `herald bench --help`)
            await self.herald.redis.flushdb()

    async def _scratch_database(self, url: str) -> str:
        """A fresh database next to the one DATABASE_URL names, dropped when the stack stops."""
        import asyncpg

        self.database_name = f"herald_bench_{os.getpid()}_{secrets.token_hex(3)}"
        parts = urlsplit(url)
        admin = await asyncpg.connect(plain_url(url))
        try:
            await admin.execute(f'CREATE DATABASE "{self.database_name}"')
        finally:
            await admin.close()
        return urlunsplit(parts._replace(path=f"/{self.database_name}"))

    @property
    def redis_url(self) -> str:
        assert self.herald is not None
        return self.herald.redis_url

    def _spawn(self, name: str, argv: list[str], port: int | None = None) -> Proc:
        log = self.work_dir / f"{name}.log"
        env = {**self.env, "HERALD_SERVER_ID": f"bench-{name}"}
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "herald", *argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=raise_fd_limit,
            )
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        if self.profile_dir:
            self._profile(proc)
        return proc

    def _profile(self, proc: Proc) -> None:
        """py-spy samples the process until the stack stops; folded stacks go to
        `<profile_dir>/<scenario>-<process>.txt` (view them with speedscope or flamegraph.pl)."""
        assert self.profile_dir is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        target = self.profile_dir / f"{self.work_dir.name}-{proc.name}.txt"
        self._profilers.append(
            subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(proc.popen.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(target),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    async def api(self, name: str = "api") -> Proc:
        port = free_port()
        proc = self._spawn(name, ["api", "--port", str(port)], port)
        await self._wait(proc, lambda: _healthy(port))
        return proc

    async def worker(self, name: str = "worker") -> Proc:
        proc = self._spawn(name, ["worker"])
        await self._wait(proc, lambda: _said(proc.log, "Herald workers running"))
        return proc

    async def _wait(self, proc: Proc, ready: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise StackError(f"{proc.name} exited: {_tail(proc.log)}")
            if await ready():
                return
            await asyncio.sleep(0.1)
        raise StackError(f"{proc.name} not ready in {timeout:.0f} s: {_tail(proc.log)}")

    async def users(self, count: int) -> list[tuple[int, str]]:
        """`count` users, each with a live session: (user id, bearer token). Written straight to
        the database: signing up through the API would spend minutes hashing passwords."""
        assert self.herald is not None
        tag = secrets.token_hex(3)
        now = utcnow()
        tokens = [new_token() for _ in range(count)]
        async with self.herald.db() as session, session.begin():
            users = [
                User(
                    username=f"b{tag}{i}",
                    email=f"b{tag}{i}@example.com",
                    password_hash="!bench",
                    email_verified=True,
                )
                for i in range(count)
            ]
            session.add_all(users)
            await session.flush()
            session.add_all(
                Session(
                    user_id=u.id,
                    token_hash=hash_token(t),
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
                for u, t in zip(users, tokens, strict=True)
            )
            return [(u.id, t) for u, t in zip(users, tokens, strict=True)]

    async def stop(self) -> None:
        for profiler in self._profilers:  # py-spy writes its file when interrupted
            profiler.send_signal(signal.SIGINT)
        for profiler in self._profilers:
            profiler.wait(30)
        self._profilers.clear()
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self.herald is not None:
            await self.herald.stop()
            self.herald = None
        if self.database_name and self.server_database:
            import asyncpg

            admin = await asyncpg.connect(plain_url(self.server_database))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            finally:
                await admin.close()


def plain_url(url: str) -> str:
    """asyncpg wants postgresql://, not SQLAlchemy's postgresql+asyncpg://."""
    return url.replace("+asyncpg", "", 1)


async def _healthy(port: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/api/health") as response,
        ):
            return response.status == 200
    return False


async def _said(log: Path, line: str) -> bool:
    return line in await asyncio.to_thread(log.read_text, errors="replace")


def _tail(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-3:])[-600:]

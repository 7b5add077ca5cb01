"""The peer Herald is measured against: `../shared/peers/seedstack`, a minimal Node.js version
of the reference Node.js stack (Express + BullMQ + Socket.IO + Nodemailer on PostgreSQL).

`PeerStack` starts it the way its README says (a copy of its folder with `npm ci`, a scratch
PostgreSQL database with its schema, a Redis of its own) and offers the scenarios the same
handles as Herald's `BenchStack`: `api()`, `worker()`, `users()`, `admin_token`. Its users and
sessions are rows with Herald's column names and token hashing, written straight to the
database, so both targets get their load the same way.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import redis.asyncio as aioredis

from herald.bench.stack import BenchStack, Proc, StackError, _healthy, _said, plain_url
from herald.core.db import utcnow
from herald.core.redis import EmbeddedRedis, free_port


def prepare(source: Path, cache: Path) -> Path:
    """A writable copy of the peer's folder with its packages installed (once per bench run:
    the source may be read-only)."""
    target = cache / "seedstack"
    if not (target / "node_modules").exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
        for path in [target, *target.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return target


class PeerStack(BenchStack):
    """The seedstack on this machine for one scenario; PostgreSQL is required (it has no
    other store)."""

    def __init__(
        self, work_dir: Path, *, folder: Path, database_url: str | None, smtp_port: int
    ) -> None:
        if not database_url:
            raise StackError("the peer runs on PostgreSQL: set DATABASE_URL")
        super().__init__(work_dir, database_url=database_url, redis_url=None, smtp_port=smtp_port)
        self.folder = folder
        self._redis = EmbeddedRedis(work_dir)
        self._pg: str | None = None

    async def start(self) -> None:
        import asyncpg

        self.work_dir.mkdir(parents=True, exist_ok=True)
        assert self.server_database is not None
        self._pg = plain_url(await self._scratch_database(self.server_database))
        conn = await asyncpg.connect(self._pg)
        try:
            await conn.execute((self.folder / "schema.sql").read_text())
        finally:
            await conn.close()
        redis_url = await self._open_redis()
        self.env.update(
            DATABASE_URL=self._pg,
            REDIS_URL=redis_url,
            ADMIN_TOKEN=self.admin_token,
            SOCKETIO_KEY=f"peer-{secrets.token_hex(3)}",
        )

    async def _open_redis(self) -> str:
        """The embedded Redis, without the password Herald's own requires: the peer reads only
        host, port and database from REDIS_URL. Bench-only, on 127.0.0.1, for this run."""
        client = aioredis.from_url(await self._redis.start())
        try:
            await client.config_set("requirepass", "")
        finally:
            await client.aclose()
        return self.redis_url

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self._redis.port}/0"

    def _spawn_node(self, name: str, script: str, port: int | None = None) -> Proc:
        log = self.work_dir / f"{name}.log"
        env = {**self.env, "SERVER_ID": f"peer-{name}", "PORT": str(port or 0)}
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                ["node", script],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        return proc

    async def api(self, name: str = "api") -> Proc:
        port = free_port()
        proc = self._spawn_node(name, "api.js", port)
        await self._wait(proc, lambda: _healthy(port))
        return proc

    async def worker(self, name: str = "worker") -> Proc:
        proc = self._spawn_node(name, "worker.js")
        await self._wait(proc, lambda: _said(proc.log, "seedstack workers running"))
        return proc

    async def users(self, count: int) -> list[tuple[int, str]]:
        import asyncpg

        tag = secrets.token_hex(3)
        tokens = [secrets.token_urlsafe(32) for _ in range(count)]
        expires = utcnow() + timedelta(days=1)
        conn = await asyncpg.connect(self._pg)
        try:
            ids = [
                row["id"]
                for row in await conn.fetch(
                    "INSERT INTO users (username, email, password_hash, email_verified) "
                    "SELECT 'p' || $1 || i, 'p' || $1 || i || '@example.com', '!bench', true "
                    "FROM generate_series(0, $2 - 1) AS i ORDER BY i RETURNING id",
                    tag,
                    count,
                )
            ]
            await conn.executemany(
                "INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
                [
                    (uid, hashlib.sha256(t.encode()).hexdigest(), expires)
                    for uid, t in zip(ids, tokens, strict=True)
                ],
            )
        finally:
            await conn.close()
        return list(zip(ids, tokens, strict=True))

    async def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        await self._redis.stop()
        self.herald = None
        await super().stop()

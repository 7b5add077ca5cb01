"""The engines' own ceiling on this machine: BullMQ-Python with a no-op handler, and a bare
python-socketio server emitting to lean clients. Herald's figures are divided by these."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from herald.bench.agent import Handlers, cpu_seconds, serve


async def bullmq_noop(redis_url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """Queue `jobs` jobs, then time one Worker draining them with a handler that does nothing."""
    from bullmq import Queue, Worker

    name = f"bench-ceiling-{time.monotonic_ns()}"
    queue = Queue(name, {"connection": redis_url})
    for start in range(0, jobs, 1000):
        batch = range(start, min(start + 1000, jobs))
        await queue.addBulk([{"name": "noop", "data": {"seq": i}} for i in batch])
    done = asyncio.Event()
    finished = 0

    async def noop(job: Any, token: str) -> None:
        nonlocal finished
        finished += 1
        if finished >= jobs:
            done.set()

    cpu, started = cpu_seconds(), time.monotonic()
    worker = Worker(name, noop, {"connection": redis_url, "concurrency": concurrency})
    await asyncio.wait_for(done.wait(), 300)
    seconds = time.monotonic() - started
    used = cpu_seconds() - cpu
    await worker.close()
    await queue.obliterate({"force": True})
    await queue.close()
    return {"jobs": jobs, "seconds": seconds, "perSecond": jobs / seconds, "cpuSeconds": used}


def bare_socketio_app() -> Any:
    """A python-socketio server with nothing of Herald: `blast` emits `n` events round-robin to
    every connected socket as fast as the server can."""
    import socketio

    sio = socketio.AsyncServer(async_mode="asgi")
    sids: list[str] = []

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        sids.append(sid)

    @sio.event
    async def disconnect(sid: str, *_: Any) -> None:
        sids.remove(sid)

    @sio.on("blast")
    async def blast(sid: str, data: dict[str, Any]) -> None:
        for seq in range(int(data["n"])):
            await sio.emit("tick", {"seq": seq}, to=sids[seq % len(sids)])

    return socketio.ASGIApp(sio)


def _handlers() -> Handlers:
    server: dict[str, Any] = {}

    async def serve_bare(port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            bare_socketio_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws_per_message_deflate=False,
        )  # as Herald's
        server["uvicorn"] = uvicorn.Server(config)
        server["task"] = asyncio.create_task(server["uvicorn"].serve())
        while not server["uvicorn"].started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.05)

    async def close() -> None:
        if "uvicorn" in server:
            server["uvicorn"].should_exit = True
            await server["task"]

    return {"bullmq": bullmq_noop, "serve_bare": serve_bare, "close": close}


def ceiling_agent(conn: Connection) -> None:
    serve(conn, _handlers)

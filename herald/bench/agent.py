"""Load generators in processes of their own, driven by commands over a pipe.

Each agent is a spawned process running one asyncio loop; the bench sends it `(command,
arguments)` and gets one reply per command. Load commands report the CPU seconds they used, so
the report can show that no generator was the bottleneck.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from herald.core import heap

Handlers = dict[str, Callable[..., Awaitable[Any]]]
_spawn = multiprocessing.get_context("spawn")


def raise_fd_limit() -> None:
    """Thousands of sockets need thousands of descriptors: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(conn: Connection, make_handlers: Callable[[], Handlers]) -> None:
    """The agent's side: run commands until `stop`."""
    raise_fd_limit()
    # An agent holds thousands of sockets too: a full collection's pause in it would be
    # counted as the latency of the stack under test (Herald's or the peer's alike).
    heap.settle()

    async def loop() -> None:
        handlers = make_handlers()
        while True:
            command, kwargs = await asyncio.to_thread(conn.recv)
            if command == "stop":
                if "close" in handlers:
                    await handlers["close"]()
                conn.send({"ok": True})
                return
            try:
                result = await handlers[command](**kwargs)
                conn.send({"ok": True, "result": result})
            except Exception as exc:  # the bench reports it; the agent keeps serving
                conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    asyncio.run(loop())


class AgentError(RuntimeError):
    pass


class Agent:
    """The bench's side of one agent process."""

    def __init__(self, name: str, target: Callable[[Connection], None]) -> None:
        self.name = name
        self._conn, child = _spawn.Pipe()
        self.process = _spawn.Process(target=target, args=(child,), name=name, daemon=True)
        self.process.start()

    def send(self, command: str, **kwargs: Any) -> None:
        self._conn.send((command, kwargs))

    async def reply(self, wait: float = 900) -> Any:
        ready = await asyncio.to_thread(self._conn.poll, wait)
        if not ready:
            raise AgentError(f"{self.name} gave no answer in {wait:.0f} s")
        answer = self._conn.recv()
        if not answer["ok"]:
            raise AgentError(f"{self.name}: {answer['error']}")
        return answer.get("result")

    async def call(self, command: str, **kwargs: Any) -> Any:
        self.send(command, **kwargs)
        return await self.reply()

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(("stop", {}))
                if self._conn.poll(10):
                    self._conn.recv()
            except (OSError, EOFError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


async def call_all(agents: list[Agent], command: str, **kwargs: Any) -> list[Any]:
    """Send one command to every agent at once, then gather the replies."""
    for agent in agents:
        agent.send(command, **kwargs)
    return [await agent.reply() for agent in agents]

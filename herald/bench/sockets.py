"""A lean Socket.IO client for load: thousands per process.

It speaks Engine.IO 4 / Socket.IO 5 over a plain WebSocket (what python-socketio and the
official JS client speak once upgraded), answers pings, and records the arrival time of each
event it is told to watch. The test suite checks Herald with the real clients; here the client
must cost as little as possible so that it is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from herald.bench.agent import Handlers, cpu_seconds, serve


class LeanSocket:
    def __init__(self, swarm: Swarm) -> None:
        self.swarm = swarm
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None

    async def open(
        self,
        session: aiohttp.ClientSession,
        url: str,
        auth: dict[str, Any] | None,
        ready_event: str | None,
    ) -> None:
        """Connect to the default namespace; done when `ready_event` (or the connect) arrives."""
        self.ready_event = ready_event
        # Offer per-message deflate as every browser does, so the server's memory per socket is
        # what browsers would cost it (a server that accepts keeps zlib state per connection).
        target = f"{url}/socket.io/?EIO=4&transport=websocket"
        self.ws = await session.ws_connect(target, compress=15)
        opening = await self.ws.receive_str()
        if not opening.startswith("0"):
            raise ConnectionError(f"unexpected opening packet {opening[:40]!r}")
        await self.ws.send_str("40" + (json.dumps(auth) if auth else ""))
        self._reader = asyncio.create_task(self._read())
        await self.ready

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            packet: str = msg.data
            if packet == "2":  # Engine.IO ping
                await self.ws.send_str("3")
            elif packet.startswith("42"):
                self._event(json.loads(packet[2:]))
            elif packet.startswith("40") and self.ready_event is None:
                self._settle(None)
            elif packet.startswith("44"):
                self._settle(ConnectionError(f"connect refused: {packet[2:120]}"))
        self._settle(ConnectionError("closed"))

    def _event(self, event: list[Any]) -> None:
        name = event[0]
        if name == self.ready_event:
            self._settle(None)
        elif name == "auth:error":
            self._settle(ConnectionError(f"auth:error {event[1:]}"))
        if name == self.swarm.watched:
            self.swarm.arrived(self, event[1] if len(event) > 1 else None)

    def _settle(self, error: Exception | None) -> None:
        if not self.ready.done():
            if error:
                self.ready.set_exception(error)
            else:
                self.ready.set_result(None)

    async def emit(self, name: str, data: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str("42" + json.dumps([name, data]))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


class Swarm:
    """The agent's state: its sockets and what they received."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.sockets: list[LeanSocket] = []
        self.watched = "notification:new"
        self.ack = False
        self.seen: list[tuple[Any, float]] = []  # (the event's `seq`, arrival time)
        self.count = 0
        self.first = self.last = 0.0
        self._cpu = 0.0
        self._changed = asyncio.Event()

    def arrived(self, sock: LeanSocket, data: Any) -> None:
        now = time.monotonic()
        self.count += 1
        self.first = self.first or now
        self.last = now
        if isinstance(data, dict):
            seq = (data.get("data") or {}).get("seq", data.get("seq"))
            self.seen.append((seq, now))
            if self.ack and "id" in data:  # as a real client does: tell Herald it arrived
                asyncio.create_task(sock.emit("notification:ack", {"id": data["id"]}))
        self._changed.set()

    async def connect(
        self,
        url: str,
        auths: list[dict[str, Any] | None],
        ready_event: str | None,
        parallel: int = 50,
    ) -> dict[str, Any]:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
            )
        session = self.session
        gate = asyncio.Semaphore(parallel)
        failures: list[str] = []
        started = time.monotonic()

        async def one(auth: dict[str, Any] | None) -> None:
            async with gate:
                sock = LeanSocket(self)
                try:
                    await asyncio.wait_for(sock.open(session, url, auth, ready_event), 60)
                    self.sockets.append(sock)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    await sock.close()

        await asyncio.gather(*(one(a) for a in auths))
        return {
            "connected": len(auths) - len(failures),
            "failed": len(failures),
            "firstFailure": failures[0] if failures else None,
            "seconds": time.monotonic() - started,
        }

    async def watch(self, event: str, ack: bool = False) -> None:
        """Start recording arrivals of `event` afresh."""
        self.watched, self.ack = event, ack
        self.seen, self.count, self.first, self.last = [], 0, 0.0, 0.0
        self._cpu = cpu_seconds()

    async def wait_for(self, count: int, timeout: float, quiet: float = 2.0) -> dict[str, Any]:
        """Wait until `count` arrivals, or nothing arrived for `quiet` s after `timeout`."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            self._changed.clear()
            left = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._changed.wait(), max(left, quiet))
            except TimeoutError:
                if left <= 0:
                    break
        return await self.results()

    async def results(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "seen": self.seen,
            "cpuSeconds": cpu_seconds() - self._cpu,
        }

    async def emit(self, name: str, data: Any) -> None:
        """Emit one event from the first socket (drives the bare server of the ceiling)."""
        await self.sockets[0].emit(name, data)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)
        self.sockets.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None


def _handlers() -> Handlers:
    swarm = Swarm()
    return {
        "connect": swarm.connect,
        "watch": swarm.watch,
        "wait_for": swarm.wait_for,
        "results": swarm.results,
        "emit": swarm.emit,
        "close": swarm.close,
    }


def swarm_agent(conn: Connection) -> None:
    serve(conn, _handlers)

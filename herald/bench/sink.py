"""An SMTP server that accepts every message, keeps none, and counts arrivals."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from herald.bench.agent import Handlers, cpu_seconds, serve

# Herald's Message-ID names the notification and is the same on every attempt.
_HERALD_ID = re.compile(rb"^Message-ID:\s*<herald\.email\.(\d+)@", re.IGNORECASE | re.MULTILINE)


class Sink:
    """`track_ids`: also count arrivals per notification (from the Message-ID), so duplicates
    can be told from distinct messages (`herald chaos`)."""

    def __init__(self, *, track_ids: bool = False) -> None:
        self.server: asyncio.Server | None = None
        self.count = 0
        self.first = self.last = 0.0
        self._cpu = 0.0
        self.track_ids = track_ids
        self.arrivals: Counter[int] = Counter()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.monotonic()
        self.count += 1
        self.first = self.first or now
        self.last = now
        if self.track_ids and (found := _HERALD_ID.search(envelope.original_content or b"")):
            self.arrivals[int(found.group(1))] += 1
        return "250 2.0.0 Ok: accepted"

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="herald-bench-sink"), host="127.0.0.1", port=port
        )
        return int(self.server.sockets[0].getsockname()[1])

    async def reset(self) -> None:
        self.count, self.first, self.last = 0, 0.0, 0.0
        self._cpu = cpu_seconds()

    async def wait_for(self, count: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.05)
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "cpuSeconds": cpu_seconds() - self._cpu,
        }

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _handlers() -> Handlers:
    sink = Sink()
    return {
        "start": sink.start,
        "reset": sink.reset,
        "wait_for": sink.wait_for,
        "close": sink.close,
    }


def sink_agent(conn: Connection) -> None:
    serve(conn, _handlers)

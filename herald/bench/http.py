"""HTTP load: closed-loop ingest at a fixed concurrency, and open-loop triggers at a fixed rate."""

from __future__ import annotations

import asyncio
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from herald.bench.agent import Handlers, cpu_seconds, serve

TRIGGER = "/api/notifications"


def trigger_body(users: list[int], seq: int, channels: list[str]) -> dict[str, Any]:
    return {
        "recipients": [{"userId": users[seq % len(users)]}],
        "type": "bench",
        "title": "Benchmark",
        "message": f"notification {seq}",
        "channels": channels,
        "data": {"seq": seq},
    }


class Http:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def _session(self, token: str) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self.session

    async def _post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> tuple[float, int]:
        """(latency in seconds, status; 0 when the request itself failed)."""
        sent = time.monotonic()
        try:
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
                return time.monotonic() - sent, response.status
        except (aiohttp.ClientError, TimeoutError):
            return time.monotonic() - sent, 0

    async def ingest(
        self,
        url: str,
        token: str,
        users: list[int],
        channels: list[str],
        concurrency: int,
        seconds: float,
    ) -> dict[str, Any]:
        """As many triggers as `concurrency` callers can make in `seconds`."""
        session = self._session(token)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        cpu, start = cpu_seconds(), time.monotonic()
        end = start + seconds
        counter = iter(range(10**9))

        async def caller() -> None:
            while time.monotonic() < end:
                latency, status = await self._post(
                    session, url + TRIGGER, trigger_body(users, next(counter), channels)
                )
                latencies.append(latency)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return {
            "latencies": latencies,
            "statuses": statuses,
            "seconds": time.monotonic() - start,
            "cpuSeconds": cpu_seconds() - cpu,
        }

    async def at_rate(
        self,
        url: str,
        token: str,
        users: list[int],
        channels: list[str],
        rate: float,
        seconds: float,
    ) -> dict[str, Any]:
        """One trigger every 1/rate s whatever the answers (open loop); seq numbers from 0."""
        session = self._session(token)
        total = int(rate * seconds)
        sends: list[tuple[int, float, int]] = []
        latencies: list[float] = []
        cpu, start = cpu_seconds(), time.monotonic()

        async def one(seq: int) -> None:
            sent = time.monotonic()
            latency, status = await self._post(
                session, url + TRIGGER, trigger_body(users, seq, channels)
            )
            sends.append((seq, sent, status))
            latencies.append(latency)

        tasks = []
        for seq in range(total):
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(seq)))
        await asyncio.gather(*tasks)
        return {
            "sends": sends,
            "latencies": latencies,
            "seconds": time.monotonic() - start,
            "cpuSeconds": cpu_seconds() - cpu,
        }

    async def post_all(
        self, url: str, token: str, bodies: list[Any], parallel: int = 4, tries: int = 5
    ) -> list[int]:
        """Post every body, each under an Idempotency-Key, and post again (at most `tries`
        times in all, a second apart) one that got no answer, a 5xx, or 409 (its first try
        still runs), as a client would: on a loaded machine a 500-recipient trigger can
        outlast the client's timeout. The last status of each."""
        session = self._session(token)
        gate = asyncio.Semaphore(parallel)
        run = uuid.uuid4().hex

        async def one(n: int, body: Any) -> int:
            headers = {"Idempotency-Key": f"bench-{run}-{n}"}
            status = 0
            for attempt in range(tries):
                if attempt:
                    await asyncio.sleep(1)
                async with gate:
                    _, status = await self._post(session, url + TRIGGER, body, headers)
                if 0 < status < 500 and status != 409:
                    break
            return status

        return list(await asyncio.gather(*(one(n, b) for n, b in enumerate(bodies))))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def _handlers() -> Handlers:
    http = Http()
    return {
        "ingest": http.ingest,
        "at_rate": http.at_rate,
        "post_all": http.post_all,
        "close": http.close,
    }


def http_agent(conn: Connection) -> None:
    serve(conn, _handlers)

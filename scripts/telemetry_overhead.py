"""How much telemetry costs per HTTP request: `python scripts/telemetry_overhead.py [REDIS_URL]`.

Runs Herald's RequestContext middleware around a trivial ASGI endpoint, in process (no sockets,
so the middleware's own cost is not hidden behind network noise), with telemetry off and on,
and prints the CPU time (of this process) per request of each and the difference; CPU time,
not wall time, because a server does other work while a write waits for Redis, and because
the machine may be busy with other things. "On" includes everything a request pays for: the
Prometheus counter and histogram, the rolling window, the two stage events (load balancer,
server) and their share of the Redis writes, which run as the loop turns between requests (as
in a server) and are all awaited before the clock stops. It also times what one notification
adds (database + queue stages, worker + channel stages with their metrics). Timings are
printed, never asserted.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import time
from typing import Any

from herald.core.config import Settings
from herald.delivery.attempts import Attempt
from herald.notifications.ladder import escalation_routes
from herald.telemetry.requests import record_request
from herald.telemetry.service import Telemetry
from herald.web.middleware import RequestContext

REQUESTS = 20_000
ROUNDS = 5


class Route:
    path = "/api/signups"


async def endpoint(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = Route()
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/signups",
        "headers": [(b"x-forwarded-for", b"203.0.113.9"), (b"content-type", b"application/json")],
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


async def per_request(app: RequestContext, telemetry: Telemetry | None) -> float:
    begun = time.process_time()
    for _ in range(REQUESTS):
        await app(scope(), receive, send)
        await asyncio.sleep(0)  # a server's loop turns between requests: the writer runs
    if telemetry:
        await telemetry.stages.flush()
    return (time.process_time() - begun) / REQUESTS * 1e6


class FakeJob:
    def __init__(self, n: int) -> None:
        self.data = {"telemetryId": f"bench-{n}", "notificationId": n}
        self.timestamp, self.delay, self.attemptsMade = time.time() * 1000, 0, 0


class Row:
    attempts = 1


async def per_notification(telemetry: Telemetry) -> float:
    begun = time.process_time()
    for n in range(REQUESTS):
        telemetry.stages.event(
            f"bench-{n}",
            "database",
            "database",
            channel="email",
            notification_id=n,
            detail={"status": "pending"},
        )
        telemetry.stages.event(
            f"bench-{n}",
            "queue",
            "queue",
            channel="email",
            notification_id=n,
            detail={"queue": "mail"},
        )
        attempt = Attempt(telemetry, FakeJob(n), "email", "mail")  # type: ignore[arg-type]
        attempt.started(Row())  # type: ignore[arg-type]
        attempt.sent(None, "bench")
        attempt.finished("retry")
        await asyncio.sleep(0)
    await telemetry.stages.flush()
    return (time.process_time() - begun) / REQUESTS * 1e6


async def main(redis_url: str) -> None:
    settings = Settings(server_id="bench")  # type: ignore[call-arg]
    telemetry = Telemetry(settings, redis_url, escalation_routes(settings))
    await telemetry.redis.ping()
    bare = RequestContext(endpoint, "bench")
    traced = RequestContext(endpoint, "bench", functools.partial(record_request, telemetry))
    off, on = [], []
    for _ in range(ROUNDS):
        off.append(await per_request(bare, None))
        on.append(await per_request(traced, telemetry))
    notification = [await per_notification(telemetry) for _ in range(ROUNDS)]
    keys = await telemetry.redis.keys("herald:telemetry:t:bench*")
    for i in range(0, len(keys), 1000):
        await telemetry.redis.delete(*keys[i : i + 1000])
    await telemetry.close()
    off_us, on_us = statistics.median(off), statistics.median(on)
    print(f"requests per round: {REQUESTS}, rounds: {ROUNDS} (medians)")
    print(f"middleware, telemetry off: {off_us:6.1f} µs/request")
    print(f"middleware, telemetry on:  {on_us:6.1f} µs/request")
    print(f"telemetry per request:     {on_us - off_us:6.1f} µs")
    per_notification_us = statistics.median(notification)
    print(f"telemetry per notification (4 stages + metrics): {per_notification_us:.1f} µs")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/10"))

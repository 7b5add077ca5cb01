"""Steady email triggers, sent the way a client behind a load balancer sends them."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any

import aiohttp

from herald.chaos.target import Target


class Load:
    """Email triggers at `rate` a second, each to an address of its own, round robin over the
    target's API servers. A server that refuses the connection is skipped for the next, as
    HAProxy's `retry-on conn-failure` does (the request never reached it); any other failure, a
    5xx or a connection cut mid-request, is an error."""

    def __init__(self, target: Target, rate: float) -> None:
        self.target = target
        self.rate = rate
        self.tag = secrets.token_hex(3)
        self.accepted: list[int] = []
        self.errors: Counter[str] = Counter()

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            begun, sent, pending = loop.time(), 0, []
            while loop.time() < begun + seconds:
                pending.append(asyncio.create_task(self._send(http, sent)))
                sent += 1
                await asyncio.sleep(max(0.0, begun + sent / self.rate - loop.time()))
            await asyncio.gather(*pending)

    async def _send(self, http: aiohttp.ClientSession, n: int) -> None:
        body = {
            "recipients": [{"email": f"chaos-{self.tag}-{n}@example.com"}],
            "type": "chaos",
            "title": f"chaos {n}",
            "message": "a fault run",
            "channels": ["email"],
        }
        headers = {"Authorization": f"Bearer {self.target.admin_token}"}
        urls = self.target.api_urls
        for attempt in range(len(urls)):
            url = urls[(n + attempt) % len(urls)]
            try:
                async with http.post(f"{url}/api/notifications", json=body, headers=headers) as r:
                    if r.status == 201:
                        answer: dict[str, Any] = await r.json()
                        self.accepted += [x["notificationId"] for x in answer["notifications"]]
                    else:
                        self.errors[f"HTTP {r.status}"] += 1
                    return
            except aiohttp.ClientConnectorError:
                continue  # refused: it never reached a server, so the next may take it
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.errors[type(exc).__name__] += 1
                return
        self.errors["no server reachable"] += 1

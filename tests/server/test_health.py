from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from tests.fixtures.herald import RunningHerald


async def get_on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    """One HTTP/1.1 request on an open connection; the response's status line."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: herald\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n")[0]


class TestHealth:
    async def test_reports_server_database_redis_and_queues(self, herald: RunningHerald) -> None:
        response = await herald.http.get("/api/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["serverId"] == herald.settings.effective_server_id
        assert body["database"]["status"] == "up"
        assert body["redis"]["status"] == "up"
        assert set(body["queues"]) == {
            "mail",
            "mail-retry-1",
            "mail-retry-2",
            "mail-dlq",
            "inapp",
            "inapp-retry-1",
            "inapp-retry-2",
            "inapp-dlq",
            "webhook",
            "webhook-retry-1",
            "webhook-retry-2",
            "webhook-dlq",
            "digests",
        }
        assert set(body["queues"]["mail"]) >= {"waiting", "active", "delayed", "failed"}

    async def test_every_response_names_server_and_request(self, herald: RunningHerald) -> None:
        response = await herald.http.get("/api/health", headers={"X-Request-ID": "trace-123"})
        assert response.headers["x-request-id"] == "trace-123"
        assert response.headers["x-served-by"] == herald.settings.effective_server_id
        missing = await herald.http.get("/api/nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert len(missing.headers["x-request-id"]) == 32  # made when none was given

    async def test_an_idle_connection_outlives_the_clients_pools(
        self, herald: RunningHerald
    ) -> None:
        # httpx keeps an idle connection 5 s: a server closing it at the same moment makes the
        # client's next request on it fail unread. So the server keeps it longer than that.
        url = urlsplit(herald.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            assert await get_on(reader, writer, "/api/health") == b"HTTP/1.1 200 OK"
            await asyncio.sleep(6)
            assert await get_on(reader, writer, "/api/health") == b"HTTP/1.1 200 OK"
        finally:
            writer.close()

    async def test_redis_down_is_degraded_not_dead(self, herald_factory) -> None:  # type: ignore[no-untyped-def]
        running = await herald_factory(redis_url="redis://127.0.0.1:1/0")
        response = await running.http.get("/api/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "degraded" and body["redis"]["status"] == "down"


class TestOpsNeedAdminToken:
    async def test_queue_counts_need_the_token(self, herald: RunningHerald) -> None:
        assert (await herald.http.get("/api/ops/queues")).status_code == 401
        wrong = await herald.http.get("/api/ops/queues", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 403
        ok = await herald.http.get("/api/ops/queues", headers=herald.admin())
        assert ok.status_code == 200 and "mail-dlq" in ok.json()["queues"]

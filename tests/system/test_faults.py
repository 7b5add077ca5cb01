"""Faults that no process dies of: an accepted email whose recording fails, Redis restarting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from herald.core.redis import EmbeddedRedis
from herald.realtime.adapter.manager import PromptRedisManager
from tests.fixtures.herald import RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.stacks import PG_URL
from tests.fixtures.waiting import eventually


def copies(smtp: SmtpSink, notification_id: int) -> int:
    """Messages the sink took for one email notification (its Message-ID is stable)."""
    marker = f"herald.email.{notification_id}@"
    return sum(marker in m.original_content.decode(errors="replace") for m in smtp.messages)


class TestRecordingFails:
    async def test_an_accepted_email_whose_recording_fails_is_recorded_not_resent(
        self, herald_factory: Any, smtp: SmtpSink, stack: dict[str, Any]
    ) -> None:
        if not stack:
            pytest.skip("cutting a database's connections needs PostgreSQL")
        herald: RunningHerald = await herald_factory(reconcile_interval=1, reconcile_grace=1)
        user = await herald.member()
        database = stack["database_url"].rsplit("/", 1)[1]
        admin = create_async_engine(str(PG_URL), isolation_level="AUTOCOMMIT")

        async def allow(yes: bool) -> None:
            async with admin.connect() as conn:
                flag = "true" if yes else "false"
                await conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {flag}'))
                if not yes:
                    await conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db"
                        ),
                        {"db": database},
                    )

        async def cut_the_database() -> None:
            smtp.before_reply = None  # once
            await allow(False)

        smtp.delay = 0.3  # the API has answered before the cut
        smtp.before_reply = cut_the_database
        try:
            r = await herald.http.post(
                "/api/notifications",
                json={
                    "recipients": [{"userId": user["userId"]}],
                    "type": "invoice",
                    "title": "Your invoice",
                    "message": "m",
                    "channels": ["email"],
                },
                headers=herald.admin(),
            )
            assert r.status_code == 201, r.text
            nid = r.json()["notifications"][0]["notificationId"]
            # The message is taken and the database is gone: the worker's recording fails (it
            # retries for ~4 s), and so does every retry of the job until the database is back.
            await eventually(lambda: _true(copies(smtp, nid) == 1 and smtp.before_reply is None))
            await asyncio.sleep(6)
        finally:
            await allow(True)
            await admin.dispose()

        async def delivered() -> dict[str, Any] | None:
            r = await herald.http.get(f"/api/ops/dlq/email/{nid}", headers=herald.admin())
            return r.json() if r.status_code == 200 and r.json()["status"] == "delivered" else None

        body = await eventually(delivered, timeout=60)
        assert copies(smtp, nid) == 1, "the accepted email was sent again"
        assert body["deliveryHistory"][-1]["status"] == "delivered"
        assert "accepted" in body["deliveryHistory"][-1]["smtpResponse"]
        assert not await herald.herald.redis.exists(f"herald:accepted:email-{nid}")


async def _true(value: bool) -> bool:
    return value


class TestRedisReturns:
    async def test_delivery_resumes_within_seconds_of_redis_answering_again(
        self, herald_factory: Any, smtp: SmtpSink, stack: dict[str, Any], tmp_path: Path
    ) -> None:
        """Redis is away for 8 s (long enough for the clients' backoff to grow), then back with
        its data; a notification sent the moment it answers arrives on both channels at once."""
        own = EmbeddedRedis(tmp_path / "redis-of-this-test")  # the shared one must not restart
        herald: RunningHerald = await herald_factory(redis_url=await own.start())
        assert isinstance(herald.herald.sio.manager, PromptRedisManager)  # type: ignore[union-attr]
        user = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(user["token"])
            await own.stop()
            await asyncio.sleep(8)
            await own.start()
            back = time.monotonic()
            r = await herald.http.post(
                "/api/notifications",
                json={
                    "recipients": [{"userId": user["userId"]}],
                    "type": "announcement",
                    "title": "After the outage",
                    "message": "m",
                    "channels": ["email", "inapp"],
                },
                headers=herald.admin(),
            )
            assert r.status_code == 201, r.text
            ids = {n["channel"]: n["notificationId"] for n in r.json()["notifications"]}
            event = await client.next("notification:new", timeout=30)
            inapp_after = time.monotonic() - back
            await eventually(lambda: _true(copies(smtp, ids["email"]) == 1), timeout=30)
            email_after = time.monotonic() - back
        finally:
            await client.close()
            await herald.http.aclose()
            await own.stop()
        print(f"after Redis returned: in-app {inapp_after:.2f}s, email {email_after:.2f}s")
        assert event["id"] == ids["inapp"]
        # The target is well under 2 s; this bound leaves room for a slow, noisy machine.
        assert inapp_after < 6 and email_after < 6

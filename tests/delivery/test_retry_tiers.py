"""Retry tiers whose delay outlasts a worker's blocking wait, and workers that wake at once.

A BullMQ worker waits for work with BZPOPMIN for up to 5 s (its drain delay) or until the next
delayed job is due (at most 10 s). When that wait was cut by a 5 s socket timeout, a job delayed
more than ~5 s (every retry tier's default) was never run, and a quiet worker took new jobs seconds
late. These tests use delays long enough to cross that line, the real defaults (by moving a
delayed job's due time in Redis rather than sleeping minutes), idle gaps, and a Redis restart.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from herald.cluster import status
from herald.cluster.topology import Backend
from herald.core.config import Settings
from herald.core.redis import EmbeddedRedis
from herald.notifications.models import Channel
from tests.fixtures.herald import RunningHerald
from tests.fixtures.notifications import notify
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

# BullMQ scores a delayed job by its due time in ms times 0x1000.
DELAYED_SCORE_SCALE = 0x1000
LONG_DELAY_MS = 15_000
# A delayed job runs when due; on a slow, noisy machine allow this much lateness.
LATE_SLACK_S = 8.0


async def record(herald: RunningHerald, channel: str, nid: int) -> dict[str, Any]:
    r = await herald.http.get(f"/api/ops/dlq/{channel}/{nid}", headers=herald.admin())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def escalated(herald: RunningHerald, channel: str, nid: int) -> dict[str, Any]:
    """The record once the notification has left tier 0."""

    async def check() -> dict[str, Any] | None:
        body = await record(herald, channel, nid)
        return body if body["escalationHistory"] else None

    return await eventually(check, timeout=30)  # type: ignore[no-any-return]


async def attempts_in(
    herald: RunningHerald, channel: str, nid: int, queue: str, timeout: float
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        history = (await record(herald, channel, nid))["deliveryHistory"]
        return [h for h in history if h["queueName"] == queue] or None

    return await eventually(check, timeout=timeout)  # type: ignore[no-any-return]


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


class TestLongTierDelays:
    async def test_both_channels_run_their_retry_tier_when_a_15s_delay_has_passed(
        self, herald_factory: Any, smtp: SmtpSink
    ) -> None:
        herald: RunningHerald = await herald_factory(
            retry_1_delay=LONG_DELAY_MS, inapp_retry_1_delay=LONG_DELAY_MS
        )
        smtp.fail_with = "451 4.3.0 try later"
        user = await herald.signup()  # its welcome email fails three times
        email_id = int(user["welcomeEmail"]["notificationId"])
        inapp_id = (await notify(herald, user, ["inapp"]))["inapp"]  # nobody is connected

        email = await escalated(herald, "email", email_id)
        smtp.fail_with = None
        inapp = await escalated(herald, "inapp", inapp_id)

        budget = LONG_DELAY_MS / 1000 + LATE_SLACK_S + 10
        [mail_retry] = await attempts_in(herald, "email", email_id, "mail-retry-1", budget)
        [inapp_retry, *_] = await attempts_in(herald, "inapp", inapp_id, "inapp-retry-1", budget)

        for body, attempt in ((email, mail_retry), (inapp, inapp_retry)):
            waited = at(attempt["timestamp"]) - at(body["escalationHistory"][0]["timestamp"])
            assert LONG_DELAY_MS / 1000 - 0.5 <= waited <= LONG_DELAY_MS / 1000 + LATE_SLACK_S
        assert mail_retry["status"] == "delivered"
        assert inapp_retry["status"] == "failed" and "offline" in inapp_retry["error"]
        assert len(smtp.to(user["email"])) == 1

    async def test_the_default_delays_are_kept_and_run_when_due(
        self, herald_factory: Any, smtp: SmtpSink
    ) -> None:
        """The real defaults (5 min, 2 min): the delayed job's due time in Redis is read, then
        moved to the near future, as if the clock had run on."""
        defaults = Settings.model_fields
        email_delay = int(defaults["retry_1_delay"].default)
        inapp_delay = int(defaults["inapp_retry_1_delay"].default)
        herald: RunningHerald = await herald_factory(
            retry_1_delay=email_delay, inapp_retry_1_delay=inapp_delay
        )
        smtp.fail_with = "451 4.3.0 try later"
        user = await herald.signup()
        inapp_id = (await notify(herald, user, ["inapp"]))["inapp"]
        jobs = {
            "email": ("mail-retry-1", int(user["welcomeEmail"]["notificationId"]), email_delay),
            "inapp": ("inapp-retry-1", inapp_id, inapp_delay),
        }
        queues, redis = herald.herald.queues, herald.herald.redis
        for channel, (queue, nid, delay) in jobs.items():
            body = await escalated(herald, channel, nid)
            escalated_ms = at(body["escalationHistory"][0]["timestamp"]) * 1000
            due = await eventually(lambda q=queue, n=nid, c=channel: queues.due_at(q, f"{c}-{n}"))
            assert abs(due - (escalated_ms + delay)) < 3000, (channel, due - escalated_ms)
        smtp.fail_with = None

        moved = time.time() + 1
        for channel, (queue, nid, _) in jobs.items():
            # Only the due time changes; no worker is told: it must find the job itself.
            key = queues.get(queue).keys["delayed"]
            await redis.zadd(key, {f"{channel}-{nid}": int(moved * 1000) * DELAYED_SCORE_SCALE})

        for channel, (queue, nid, _) in jobs.items():
            [attempt, *_] = await attempts_in(herald, channel, nid, queue, 10 + LATE_SLACK_S)
            assert at(attempt["timestamp"]) >= moved - 0.5
        assert (await record(herald, "email", jobs["email"][1]))["status"] == "delivered"


class TestQuietWorkers:
    async def test_a_job_after_a_quiet_spell_is_taken_at_once(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.member()
        client = RecordingClient(ack=True)
        await client.connect(herald.url)
        try:
            await client.authenticate(user["token"])
            await notify(herald, user, ["email", "inapp"], "warm-up")
            await client.next("notification:new", timeout=20)
            for gap in (6, 30):
                await asyncio.sleep(gap)
                ids = await notify(herald, user, ["email", "inapp"], f"after {gap}s")
                sent = time.monotonic()
                await client.next("notification:new", timeout=20)
                arrived = time.monotonic() - sent
                assert arrived < 1.0, f"in-app arrived {arrived:.2f}s after a {gap}s gap"
                for channel, nid in ids.items():
                    wait = await worker_wait_ms(herald, channel, nid)
                    print(f"after {gap}s idle: {channel} worker wait {wait:.1f} ms")
                    assert wait < 1000, f"{channel} waited {wait} ms after a {gap}s gap"
                print(f"after {gap}s idle: trigger -> notification:new {arrived * 1000:.1f} ms")
        finally:
            await client.close()


async def worker_wait_ms(herald: RunningHerald, channel: str, nid: int) -> float:
    path = f"/api/ops/telemetry/notification/{channel}/{nid}"

    async def check() -> float | None:
        r = await herald.http.get(path, headers=herald.admin())
        if r.status_code != 200:
            return None
        worker = [s for s in r.json()["stages"] if s["stage"] == "worker"]
        return float(worker[0]["detail"]["waitMs"]) if worker else None

    return await eventually(check)  # type: ignore[no-any-return]


class TestRedisRestart:
    async def test_a_job_delayed_in_a_retry_tier_survives_a_redis_restart(
        self, herald_factory: Any, smtp: SmtpSink, stack: dict[str, Any], tmp_path: Path
    ) -> None:
        """Restarted with its data (the embedded Redis's append-only file, or an external
        Redis with persistence): the worker reconnects and the delayed job runs when due."""
        external = None
        overrides: dict[str, Any] = {"retry_1_delay": 8000, "reconcile_interval": 600}
        if stack:  # a Redis of this test's own: the shared one must not be restarted
            external = EmbeddedRedis(tmp_path / "external")
            overrides["redis_url"] = await external.start()
        herald: RunningHerald = await herald_factory(**overrides)
        redis_server = external or herald.herald.embedded_redis
        assert redis_server is not None
        try:
            smtp.fail_with = "451 4.3.0 try later"
            user = await herald.signup()
            nid = int(user["welcomeEmail"]["notificationId"])
            body = await escalated(herald, "email", nid)
            escalated_at = at(body["escalationHistory"][0]["timestamp"])
            smtp.fail_with = None

            await redis_server.stop()
            await asyncio.sleep(1)
            await redis_server.start()

            [attempt] = await attempts_in(herald, "email", nid, "mail-retry-1", 30)
            assert attempt["status"] == "delivered"
            assert at(attempt["timestamp"]) - escalated_at >= 8 - 0.5
            assert len(smtp.to(user["email"])) == 1
        finally:
            if external:
                await external.stop()


class TestOverdueDelayedJobs:
    async def test_status_and_queue_counts_name_a_delayed_job_nobody_runs(
        self, herald_factory: Any
    ) -> None:
        herald: RunningHerald = await herald_factory(workers=False)
        queues = herald.herald.queues
        # A job that was due a minute ago, in a queue no worker drains.
        await queues.enqueue(Channel.EMAIL, 424242, tier=1, delay_ms=60_000)
        key = queues.get("mail-retry-1").keys["delayed"]
        overdue_score = int((time.time() - 60) * 1000) * DELAYED_SCORE_SCALE
        await herald.herald.redis.zadd(key, {"email-424242": overdue_score})

        r = await herald.http.get("/api/ops/queues", headers=herald.admin())
        assert r.json()["queues"]["mail-retry-1"]["overdue"] == 1
        assert r.json()["queues"]["mail"]["overdue"] == 0

        server = Backend("api", "127.0.0.1", herald.settings.port)
        report = await status.gather(herald.settings, status.Target([server], None, None, []))
        overdue = "1 delayed job(s) in mail-retry-1 are overdue: no worker promotes them"
        assert f"{overdue} (HeraldDelayedJobsOverdue)" in report["problems"]
        alerts = (await herald.http.get("/api/ops/alerts", headers=herald.admin())).json()
        assert overdue in [a["message"] for a in alerts["alerts"]]  # the dashboard's banner
        assert not report["ok"]

"""Nothing is lost: a Redis outage, a Redis that comes back empty, a worker killed mid-batch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from herald.core.redis import EmbeddedRedis, free_port
from herald.delivery import bullmq_clients
from herald.notifications.ladder import job_id
from herald.notifications.models import Channel
from herald.runtime import Herald
from tests.fixtures.herald import RunningHerald, make_settings
from tests.fixtures.notifications import all_delivered
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

FAST_RECONCILE = {"enqueue_timeout": 0.5, "reconcile_interval": 0.3, "reconcile_grace": 0.3}


@pytest.fixture
async def own_redis(tmp_path: Path) -> Any:
    """A Redis the test may stop and start again on the same port."""
    port = free_port()
    servers: list[EmbeddedRedis] = []

    async def start(*, keep_data: bool = True) -> EmbeddedRedis:
        if not keep_data:
            for f in (tmp_path / "own-redis" / "redis").glob("*"):
                if f.is_dir():
                    for g in f.iterdir():
                        g.unlink()
                elif f.name != "password":  # the same server, its data lost: same password
                    f.unlink()
        server = EmbeddedRedis(tmp_path / "own-redis", port=port)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class TestRedisOutage:
    async def test_triggers_during_outage_are_stored_and_delivered_after(
        self, herald_factory: Any, own_redis: Any, smtp: SmtpSink
    ) -> None:
        redis = await own_redis()
        running: RunningHerald = await herald_factory(redis_url=redis.url, **FAST_RECONCILE)
        await running.signup()  # everything works before the outage
        await redis.stop()

        users = [await running.signup() for _ in range(5)]  # the API still answers
        ids = [int(u["welcomeEmail"]["notificationId"]) for u in users]
        assert {u["welcomeEmail"]["status"] for u in users} == {"pending"}
        health = (await running.http.get("/api/health")).json()
        assert health["status"] == "degraded"

        await own_redis()  # Redis is back
        await eventually(lambda: all_delivered(running.herald, ids), timeout=60)
        for user in users:
            assert len(smtp.to(user["email"])) == 1

    async def test_jobs_lost_with_an_empty_redis_are_requeued(
        self, herald_factory: Any, own_redis: Any, tmp_path: Path, smtp: SmtpSink
    ) -> None:
        redis = await own_redis()
        api: RunningHerald = await herald_factory(
            workers=False, redis_url=redis.url, **FAST_RECONCILE
        )
        users = [await api.signup() for _ in range(3)]
        ids = [int(u["welcomeEmail"]["notificationId"]) for u in users]
        assert {u["welcomeEmail"]["status"] for u in users} == {"queued"}

        await redis.stop()
        await own_redis(keep_data=False)  # came back with nothing: the jobs are gone

        worker = Herald(
            make_settings(
                tmp_path / "worker",
                database_url=api.settings.effective_database_url,
                redis_url=redis.url,
                email_host="127.0.0.1",
                email_port=smtp.port,
                **FAST_RECONCILE,
            ),
            api=False,
            workers=True,
        )
        await worker.start()
        try:
            await eventually(lambda: all_delivered(worker, ids), timeout=60)
        finally:
            await worker.stop()
        assert sum(len(smtp.to(u["email"])) for u in users) == 3


class TestWorkerKilled:
    async def test_sigkill_mid_batch_loses_nothing_and_duplicates_are_bounded(
        self, herald_factory: Any, smtp: SmtpSink, tmp_path: Path
    ) -> None:
        concurrency = 4
        api: RunningHerald = await herald_factory(workers=False)
        smtp.delay = 0.25  # each message takes a while, so several are in flight at the kill
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HERALD_TEST")},
            "DATABASE_URL": api.settings.effective_database_url,
            "REDIS_URL": api.herald.redis_url,
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "HERALD_DATA_DIR": str(tmp_path / "worker-data"),
            "MAIL_QUEUE_CONCURRENCY": str(concurrency),
            "HERALD_JOB_LOCK_MS": "1500",
            "HERALD_STALLED_INTERVAL_MS": "500",
            "HERALD_LOG_LEVEL": "warning",
        }

        def start_worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "herald", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        users = [await api.signup() for _ in range(24)]
        ids = [int(u["welcomeEmail"]["notificationId"]) for u in users]
        first = start_worker()
        try:
            await eventually(lambda: _at_least(smtp, 6), timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed_at = len(smtp.messages)
            assert killed_at < len(ids), "the batch finished before the kill; slow SMTP more"
            second = start_worker()
            try:
                await eventually(lambda: all_delivered(api.herald, ids), timeout=90)
            finally:
                second.terminate()
                second.wait(30)
        finally:
            if first.poll() is None:
                first.kill()

        received = [m.rcpt_tos[0] for m in smtp.messages]
        duplicates = len(received) - len(set(received))
        assert set(received) == {u["email"] for u in users}  # every notification arrived
        assert duplicates <= concurrency  # at most the jobs in flight when the worker died
        print(f"killed after {killed_at} messages; duplicates: {duplicates} (bound {concurrency})")


async def _at_least(smtp: SmtpSink, count: int) -> bool:
    await asyncio.sleep(0)
    return len(smtp.messages) >= count


async def test_the_reconcilers_batched_job_states_match_bullmqs_own(
    herald: RunningHerald, smtp: SmtpSink
) -> None:
    """The reconciler asks for many jobs' states in one round trip through BullMQ's script
    (bullmq_clients.job_states): it must say what `Queue.getJobState` says, job by job, or a
    BullMQ upgrade that changed the script's keys would make it requeue live jobs."""
    user = await herald.signup()
    delivered = int(user["welcomeEmail"]["notificationId"])
    await eventually(lambda: all_delivered(herald.herald, [delivered]), timeout=30)
    queues = herald.herald.queues
    mail = queues.tier(Channel.EMAIL, 0).queue
    scratch = queues.get(f"scratch-{uuid.uuid4().hex[:8]}")
    await scratch.add("x", {}, {"jobId": "waits"})
    await scratch.add("x", {}, {"jobId": "later", "delay": 600_000})
    for queue, jobs in (
        (scratch, ["waits", "later", "none"]),
        (queues.get(mail), [job_id(Channel.EMAIL, delivered)]),
    ):
        expected = [await queue.getJobState(j) for j in jobs]
        assert await bullmq_clients.job_states(queue, jobs) == expected
    assert expected == ["completed"]
    assert await queues.live(scratch.name, ["waits", "later", "none"]) == {"waits", "later"}
    await scratch.obliterate(force=True)

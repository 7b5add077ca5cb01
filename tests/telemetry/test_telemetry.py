"""Telemetry: stage timelines, Prometheus /metrics, the JSON summary and the /admin namespace."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from herald.core.redis import free_port
from herald.telemetry.requests import lb_timestamp
from herald.telemetry.window import Bin
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

ORDER = ["load_balancer", "server", "database", "queue", "worker", "channel", "ack"]


async def timeline_with(herald: RunningHerald, path: str, *stages: str) -> dict[str, Any]:
    """The timeline at `path` once it holds every one of `stages`."""

    async def complete() -> dict[str, Any] | None:
        r = await herald.http.get(path, headers=herald.admin())
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        seen = {s["stage"] for s in body["stages"]}
        return body if seen >= set(stages) else None

    return await eventually(complete)  # type: ignore[no-any-return]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestStageTimeline:
    async def test_email_followed_from_request_to_smtp(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        request_id = f"signup-{uuid.uuid4().hex[:12]}"
        started_ms = time.time() * 1000 - 5
        name = f"t{uuid.uuid4().hex[:8]}"
        body = {"username": name, "email": f"{name}@example.com", "password": "s3cret-pass"}
        r = await herald.http.post(
            "/api/signups",
            json=body,
            headers={
                "X-Request-ID": request_id,
                "X-Forwarded-For": "203.0.113.9",
                "X-Request-Start": f"t={int(started_ms)}",
            },
        )
        assert r.status_code == 201 and r.headers["x-request-id"] == request_id
        email_id = r.json()["welcomeEmail"]["notificationId"]
        await smtp.wait_for(body["email"])

        timeline = await timeline_with(
            herald, f"/api/ops/telemetry/{request_id}", "server", "channel"
        )
        stages = timeline["stages"]
        names = [s["stage"] for s in stages]
        assert names == ["load_balancer", "server", "database", "queue", "worker", "channel"]
        assert [s["timestamp"] for s in stages] == sorted(s["timestamp"] for s in stages)
        lb, server, database, queue, worker, channel = stages
        assert lb["detail"] == {
            "forwardedFor": "203.0.113.9",
            "forwardedHost": "",
            "measured": True,
        }
        assert lb["timestamp"] == pytest.approx(int(started_ms), abs=1)
        assert server["detail"]["route"] == "/api/signups" and server["detail"]["status"] == 201
        assert server["serverId"] == herald.settings.effective_server_id
        for stage in (database, queue, worker, channel):
            assert (stage["channel"], stage["notificationId"]) == ("email", email_id)
            assert stage["telemetryId"] == request_id
        assert queue["detail"]["queue"] == "mail" and queue["detail"]["outcome"] == "enqueued"
        assert worker["detail"]["queue"] == "mail" and worker["detail"]["attempt"] == 1
        assert channel["detail"]["outcome"] == "smtp accepted"
        assert channel["detail"]["response"].startswith("2.0.0")
        assert timeline["durationMs"] == pytest.approx(
            channel["timestamp"] - lb["timestamp"], abs=0.01
        )

        by_notification = await herald.http.get(
            f"/api/ops/telemetry/notification/email/{email_id}", headers=herald.admin()
        )
        assert by_notification.status_code == 200
        assert [s["stage"] for s in by_notification.json()["stages"]] == names

    async def test_failed_attempt_and_its_retry_are_both_on_the_timeline(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "451 4.3.0 try later"
        request_id = f"retry-{uuid.uuid4().hex[:12]}"
        name = f"t{uuid.uuid4().hex[:8]}"
        r = await herald.http.post(
            "/api/signups",
            json={"username": name, "email": f"{name}@example.com", "password": "s3cret-pass"},
            headers={"X-Request-ID": request_id},
        )
        assert r.status_code == 201
        await eventually(lambda: asyncio.sleep(0, smtp.refused >= 1))
        smtp.fail_with = None
        await smtp.wait_for(f"{name}@example.com")

        async def delivered() -> list[dict[str, Any]] | None:
            got = await herald.http.get(f"/api/ops/telemetry/{request_id}", headers=herald.admin())
            channel = [s for s in got.json()["stages"] if s["stage"] == "channel"]
            return channel if channel and channel[-1]["detail"]["outcome"] != "failed" else None

        channel = await eventually(delivered)
        assert channel[0]["detail"]["outcome"] == "failed"
        assert "451" in channel[0]["detail"]["error"]
        assert channel[-1]["detail"]["outcome"] == "smtp accepted"

    async def test_inapp_followed_through_socket_emit_and_ack(self, herald: RunningHerald) -> None:
        sender, recipient = await herald.member(), await herald.member()
        client = RecordingClient()
        await client.connect(herald.url)
        try:
            await client.authenticate(recipient["token"])
            request_id = f"friend-{uuid.uuid4().hex[:12]}"
            r = await herald.http.post(
                "/api/friend-requests",
                json={"toUserId": recipient["userId"]},
                headers={**sender["auth"], "X-Request-ID": request_id},
            )
            assert r.status_code == 201, r.text
            event = await client.next("notification:new")
            while event["type"] != "friend_request":
                event = await client.next("notification:new")
            assert event["telemetryId"] == request_id  # the id travelled with the job
            assert (await client.sio.call("notification:ack", {"ids": [event["id"]]})) == {
                "acked": [event["id"]]
            }

            path = f"/api/ops/telemetry/notification/inapp/{event['id']}"
            timeline = await timeline_with(herald, path, "ack", "channel")
            names = [s["stage"] for s in timeline["stages"]]
            # The in-app attempt ends when the client's ack reaches the worker.
            assert names == ["server", "database", "queue", "worker", "ack", "channel"]
            ack, channel = timeline["stages"][-2:]
            assert channel["detail"]["outcome"] == "socket acknowledged"
            assert channel["detail"]["socketId"] == ack["detail"]["socketId"]
            assert all(s["offsetMs"] >= 0 for s in timeline["stages"])
        finally:
            await client.close()

    async def test_timelines_need_the_admin_token_and_exist(self, herald: RunningHerald) -> None:
        await herald.http.get("/api/health", headers={"X-Request-ID": "health-check-1"})
        missing = await herald.http.get("/api/ops/telemetry/health-check-1", headers=herald.admin())
        assert missing.status_code == 404  # health checks leave no timeline
        assert missing.json()["error"]["code"] == "timeline_not_found"
        assert (await herald.http.get("/api/ops/telemetry/x")).status_code == 401
        nothing = await herald.http.get(
            "/api/ops/telemetry/notification/email/999999", headers=herald.admin()
        )
        assert nothing.status_code == 404


class TestMetrics:
    async def test_prometheus_counters_move(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        before = samples((await herald.http.get("/metrics")).text)
        users = [await herald.signup() for _ in range(3)]
        for user in users:
            await smtp.wait_for(user["email"])
        client = RecordingClient()
        await client.connect(herald.url)
        try:

            async def scraped() -> dict[Any, float] | None:
                after = samples((await herald.http.get("/metrics")).text)
                key = ("herald_jobs_total", (("outcome", "delivered"), ("queue", "mail")))
                # Stage events are written in batches, a moment after the step they record.
                events = ("herald_telemetry_stage_events_total", (("result", "written"),))
                wanted = {key: 3, events: 3 * 5}
                moved = {k: after.get(k, 0) - before.get(k, 0) for k in wanted}
                return after if all(moved[k] >= n for k, n in wanted.items()) else None

            after = await eventually(scraped)
        finally:
            await client.close()

        def moved(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0) - before.get(key, 0)

        route = {"method": "POST", "route": "/api/signups", "status": "201"}
        assert moved("herald_http_requests_total", **route) == 3
        assert moved("herald_http_request_duration_seconds_count", route="/api/signups") == 3
        assert moved("herald_channel_deliveries_total", channel="email", outcome="delivered") >= 3
        assert moved("herald_channel_send_duration_seconds_count", channel="email") >= 3
        assert moved("herald_socket_events_total", event="connect", outcome="ok") >= 1
        assert after[("herald_socket_connections", ())] >= 1
        assert moved("herald_telemetry_stage_events_total", result="written") >= 3 * 5
        queues = {dict(labels)["queue"] for (name, labels) in after if name == "herald_queue_jobs"}
        assert {"mail", "mail-retry-1", "mail-dlq", "inapp", "inapp-dlq"} <= queues

    async def test_json_summary_per_component(self, herald: RunningHerald, smtp: SmtpSink) -> None:
        assert (await herald.http.get("/api/ops/metrics")).status_code == 401
        users = [await herald.signup() for _ in range(4)]
        for user in users:
            await smtp.wait_for(user["email"])

        async def summary() -> dict[str, Any] | None:
            r = await herald.http.get("/api/ops/metrics", headers=herald.admin())
            body: dict[str, Any] = r.json()
            counts = [
                body["components"].get(c, {"count": 0})["count"]
                for c in ("channel:email", "queue:mail")
            ]
            return body if min(counts) >= 4 else None

        body = await eventually(summary)
        api = body["components"]["api"]
        assert api["count"] >= 4 and api["perSecond"] > 0
        assert 0 < api["p50Ms"] <= api["p95Ms"] <= api["p99Ms"]
        assert api["successRate"] == 1.0 and api["errorRate"] == 0.0
        assert body["components"]["channel:email"]["successRate"] == 1.0
        assert body["components"]["queue:mail"]["count"] >= 4
        assert set(body["queues"]) >= {"mail", "mail-retry-1", "mail-retry-2", "mail-dlq"}
        assert body["queueDepth"]["mail"] >= 0
        assert body["connections"]["thisServer"] >= 0
        assert herald.settings.effective_server_id in {p["serverId"] for p in body["processes"]}

    async def test_worker_process_metrics_reach_the_summary_and_its_own_port(
        self, herald_factory: Any, tmp_path: Path, smtp: SmtpSink
    ) -> None:
        api: RunningHerald = await herald_factory(workers=False)
        port = free_port()
        worker = start_worker(api, tmp_path, smtp, port)
        try:
            user = await api.signup()
            await smtp.wait_for(user["email"], timeout=60)

            async def from_worker() -> dict[str, Any] | None:
                r = await api.http.get("/api/ops/metrics", headers=api.admin())
                body: dict[str, Any] = r.json()
                ids = {p["serverId"] for p in body["processes"]}
                email = body["components"].get("channel:email", {"count": 0})
                return body if "metrics-worker" in ids and email["count"] >= 1 else None

            await eventually(from_worker, timeout=30)
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            got = samples(text)
            key = ("herald_jobs_total", (("outcome", "delivered"), ("queue", "mail")))
            assert got[key] >= 1
        finally:
            worker.terminate()
            worker.wait(30)


def start_worker(
    api: RunningHerald, tmp_path: Path, smtp: SmtpSink, metrics_port: int
) -> subprocess.Popen[bytes]:
    """`herald worker --metrics-port` as its own process, sharing the API server's stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "REDIS_"))}
    env.update(
        DATABASE_URL=api.settings.effective_database_url,
        REDIS_URL=api.herald.redis_url,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp.port),
        HERALD_DATA_DIR=str(tmp_path / "worker"),
        HERALD_SERVER_ID="metrics-worker",
        HERALD_LOG_LEVEL="warning",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "herald", "worker", "--metrics-port", str(metrics_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class TestAdminNamespace:
    async def test_refuses_without_the_admin_token(self, herald: RunningHerald) -> None:
        for auth in (None, {"token": "wrong"}, {"token": 42}):
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(
                    herald.url,
                    namespaces=["/admin"],
                    auth=auth,
                    transports=["websocket"],
                    wait_timeout=5,
                )
            await client.disconnect()

    async def test_streams_stages_and_aggregates(self, herald: RunningHerald) -> None:
        client = socketio.AsyncClient(reconnection=False)
        stages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        aggregates: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        client.on("telemetry:stage", stages.put, namespace="/admin")
        client.on("telemetry:aggregate", aggregates.put, namespace="/admin")
        await client.connect(
            herald.url,
            namespaces=["/admin"],
            auth={"token": ADMIN_TOKEN},
            transports=["websocket"],
            wait_timeout=5,
        )
        try:
            first = await asyncio.wait_for(aggregates.get(), 5)
            assert {"components", "queues", "queueDepth", "connections"} <= set(first)
            request_id = f"live-{uuid.uuid4().hex[:12]}"
            await herald.signup(username=f"l{uuid.uuid4().hex[:8]}")
            await herald.http.post(
                "/api/signups",
                json={
                    "username": request_id,
                    "email": f"{request_id}@example.com",
                    "password": "s3cret-pass",
                },
                headers={"X-Request-ID": request_id},
            )
            seen: set[str] = set()
            while not {"server", "database", "queue", "worker", "channel"} <= seen:
                event = await asyncio.wait_for(stages.get(), 10)
                if event["telemetryId"] == request_id:
                    seen.add(event["stage"])

            async def counted() -> bool:
                aggregate = await asyncio.wait_for(aggregates.get(), 5)
                return aggregate["components"].get("api", {}).get("count", 0) >= 1

            await eventually(counted)
        finally:
            await client.disconnect()


class TestWindow:
    def test_percentiles_within_a_bucket(self) -> None:
        b = Bin()
        for ms in range(1, 1001):
            b.add(float(ms), ok=ms % 10 != 0)
        assert b.count == 1000 and b.errors == 100
        for q, true in ((0.5, 500), (0.95, 950), (0.99, 990)):
            assert b.percentile(q) == pytest.approx(true, rel=0.1)
        summary = b.summary(10)
        assert summary["perSecond"] == 100 and summary["errorRate"] == 0.1

    def test_bins_merge_like_one(self) -> None:
        one, a, c = Bin(), Bin(), Bin()
        for ms in (0.3, 2, 7, 40, 900):
            one.add(ms, True)
            (a if ms < 5 else c).add(ms, True)
        a.merge(Bin.from_json(c.to_json()))
        assert a.to_json() == one.to_json()

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (b"t=1700000000123", 1700000000123.0),
            (b"t=1700000000.123", 1700000000123.0),
            (b"t=1700000000123456", 1700000000123.456),
            (b"nonsense", None),
            (None, None),
        ],
    )
    def test_load_balancer_timestamp(self, header: bytes | None, expected: float | None) -> None:
        got = lb_timestamp(header)
        assert got == (pytest.approx(expected) if expected is not None else None)

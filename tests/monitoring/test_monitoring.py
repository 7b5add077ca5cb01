"""Monitoring the seed promises: escalations per tier, connection analytics, and the alert
conditions, in `/api/ops/metrics`, Prometheus, `/api/ops/alerts`, `herald status` and the
dashboard; and the alert rules loaded by Prometheus's own `promtool`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
from playwright.async_api import expect

from herald.cluster import status as status_
from herald.core.redis import free_port
from herald.monitoring import conditions
from tests.fixtures.herald import ADMIN_TOKEN, RunningHerald
from tests.fixtures.notifications import wait_email, welcome_id
from tests.fixtures.paths import ROOT
from tests.fixtures.realtime_client import RecordingClient
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMTOOL = shutil.which("promtool")


async def summary(herald: RunningHerald) -> dict[str, Any]:
    response = await herald.http.get("/api/ops/metrics", headers=herald.admin())
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def prometheus(herald: RunningHerald) -> str:
    return (await herald.http.get("/metrics")).text


async def status(herald: RunningHerald) -> subprocess.CompletedProcess[str]:
    """`herald status --json` against this Herald's database and Redis."""
    settings = herald.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "REDIS_"))}
    env.update(
        HERALD_DATA_DIR=str(settings.data_dir),
        DATABASE_URL=settings.effective_database_url,
        EMAIL_HOST="127.0.0.1",
        LOAD_BALANCER_PORT=str(free_port()),
    )
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "herald", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestEscalations:
    async def test_per_tier_in_summary_prometheus_alerts_and_status(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        smtp.fail_with = "451 4.3.0 try later"  # climbs every tier, then the DLQ
        nid = welcome_id(await herald.signup())
        await wait_email(herald, nid, "failed")

        s = await summary(herald)
        moves = {(m["fromQueue"], m["toQueue"]): m for m in s["escalations"]["perMinute"]}
        assert set(moves) >= {
            ("mail", "mail-retry-1"),
            ("mail-retry-1", "mail-retry-2"),
            ("mail-retry-2", "mail-dlq"),
        }
        # On the shared PostgreSQL, earlier tests' unsent emails may climb this ladder too (this
        # Herald's reconciler sends them): the counts are at least ours, and agree everywhere.
        first = moves[("mail", "mail-retry-1")]
        assert first["count"] >= 1 and first["perMinute"] > 0
        tiers = {t["queue"]: t for t in s["escalations"]["tiers"]}
        assert set(tiers) == {
            "mail-retry-1",
            "mail-retry-2",
            "mail-dlq",
            "inapp-retry-1",
            "inapp-retry-2",
            "inapp-dlq",
            "webhook-retry-1",
            "webhook-retry-2",
            "webhook-dlq",
        }
        for queue, tier in tiers.items():
            jobs = s["queues"][queue]
            assert tier["current"] == jobs["waiting"] + jobs["active"] + jobs["delayed"]
        assert tiers["mail-dlq"]["tier"] == "dlq" and tiers["mail-dlq"]["current"] >= 1
        assert tiers["mail-dlq"]["inflowPerMinute"] > 0

        text = await prometheus(herald)
        labels = 'channel="email",from_queue="mail",to_queue="mail-retry-1"'
        [counted] = re.findall(rf"herald_escalations_total{{{labels}}} ([0-9.]+)", text)
        assert float(counted) >= first["count"]  # the counter, read a moment later

        async def growing() -> list[dict[str, Any]]:
            # Read from the snapshots each process publishes every second: a second or two late.
            # (On the shared PostgreSQL, earlier tests' offline in-app notifications may reach
            # inapp-dlq meanwhile, through this Herald's reconciler: only mail-dlq is ours.)
            alerts = (await herald.http.get("/api/ops/alerts", headers=herald.admin())).json()
            return [
                a
                for a in alerts["alerts"]
                if a["alert"] == "HeraldDeadLettersGrowing" and "mail-dlq" in a["message"]
            ]

        [growing] = await eventually(growing, timeout=10)
        assert growing["severity"] == "warning"

        result = await status(herald)
        report = json.loads(result.stdout)
        assert result.returncode == 0, report["problems"]  # a warning is not a failure
        assert any("mail-dlq" in w and "HeraldDeadLettersGrowing" in w for w in report["warnings"])


class TestConnectionAnalytics:
    async def test_connects_disconnects_and_reconnections(self, herald: RunningHerald) -> None:
        user = await herald.member()

        async def signed_in(token: str) -> RecordingClient:
            client = RecordingClient()
            await client.connect(herald.url, auth={"token": token})
            await client.next("auth:success")
            return client

        async def counts() -> dict[str, int]:
            return (await summary(herald))["connectionRates"]["cluster"]["lastMinute"]  # type: ignore[no-any-return]

        await (await signed_in(user["token"])).close()
        await eventually(lambda: _at_least(counts, "disconnects", 1))
        again = await signed_in(user["token"])  # the same user, within the window
        stranger = await signed_in((await herald.member())["token"])  # a first connection
        try:
            seen = await eventually(lambda: _at_least(counts, "connects", 3))
            assert seen["reconnections"] == 1 and seen["disconnects"] == 1
            s = await summary(herald)
            [server] = s["connectionRates"]["servers"]
            assert server["serverId"] == herald.settings.effective_server_id
            assert server["lastMinute"] == seen and server["perMinute"]["connects"] > 0
            text = await prometheus(herald)
            assert 'herald_socket_connection_events_total{kind="reconnect"} 1.0' in text
            assert 'herald_socket_connection_events_total{kind="connect"} 3.0' in text
        finally:
            await again.close()
            await stranger.close()


async def _at_least(counts: Any, key: str, n: int) -> dict[str, int] | None:
    seen = await counts()
    return seen if seen[key] >= n else None  # type: ignore[no-any-return]


class TestAlertRules:
    def test_promtool_loads_and_unit_tests_the_rules(self) -> None:
        if PROMTOOL is None:
            pytest.skip(
                "promtool is not installed (Debian's prometheus package; make test adds it)"
            )
        checked = subprocess.run(
            [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "SUCCESS: 9 rules found" in checked.stdout
        tested = subprocess.run(
            [PROMTOOL, "test", "rules", str(ROOT / "tests" / "prometheus" / "alerts_test.yml")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tested.returncode == 0, tested.stdout + tested.stderr

    def test_every_condition_has_its_rule(self) -> None:
        rules = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
        tripped = conditions.Facts(
            components={
                "api": {"count": 100, "errorRate": 0.5},
                "channel:email": {"count": 100, "errorRate": 0.9},
            },
            escalations={
                "tiers": [
                    {"tier": "dlq", "queue": "mail-dlq", "inflowPerMinute": 2, "current": 5},
                ]
            },
            queue_wait={"mail": {"p95Ms": 45_000}},
            heartbeats={"server2": False, "server1": True},
            queues={"mail-retry-1": {"delayed": 3, "overdue": 2}, "mail": {"overdue": 0}},
            redis_up=False,
            database_up=False,
        )
        found = conditions.evaluate(tripped)
        assert {c.alert for c in found} == {
            "HeraldApiErrorRate",
            "HeraldDeliveryFailureRate",
            "HeraldDeadLettersGrowing",
            "HeraldQueueWaitHigh",
            "HeraldServerHeartbeatMissing",
            "HeraldRedisDown",
            "HeraldDatabaseDown",
            "HeraldDelayedJobsOverdue",
        }
        assert {c.alert for c in found} <= rules
        assert conditions.evaluate(conditions.Facts()) == []

    async def test_a_new_check_reaches_the_banner_and_status(
        self, herald: RunningHerald, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The extension point: a check appended to CHECKS shows in `GET /api/ops/alerts` and,
        being critical, is a problem for `herald status` (exit 1)."""

        def overdue(f: conditions.Facts) -> Any:
            if "mail" in f.queues:  # the facts came from Redis
                yield conditions.Condition("HeraldTestOverdue", "critical", "a job is overdue")

        monkeypatch.setattr(conditions, "CHECKS", [*conditions.CHECKS, overdue])
        alerts = (await herald.http.get("/api/ops/alerts", headers=herald.admin())).json()
        assert [a["alert"] for a in alerts["alerts"]] == ["HeraldTestOverdue"]
        report = await status_.gather(herald.settings, status_.Target(None, None, None, []))
        assert report["problems"] == ["a job is overdue (HeraldTestOverdue)"]
        assert report["ok"] is False

    async def test_prometheus_exports_every_metric_the_rules_use(
        self, herald: RunningHerald
    ) -> None:
        text = await prometheus(herald)
        used = set(re.findall(r"\b(herald_\w+)", ALERTS.read_text()))
        for name in used:
            base = re.sub(r"_bucket$", "", name)
            assert f"# TYPE {base} " in text, name
        assert 'herald_dependency_up{dependency="redis"} 1.0' in text
        assert 'herald_dependency_up{dependency="database"} 1.0' in text
        assert 'herald_presence_servers{state="missing"} 0.0' in text


class TestDashboard:
    async def test_banner_escalations_connections_and_record_view(
        self,
        herald: RunningHerald,
        smtp: SmtpSink,
        contexts: Any,  # noqa: F811 - the fixture imported above
    ) -> None:
        smtp.fail_with = "550 5.1.1 no such user here"
        user = await herald.signup()
        nid = welcome_id(user)
        await wait_email(herald, nid, "failed")
        context = await contexts()
        await context.add_init_script(f"sessionStorage.setItem('herald.admin', '{ADMIN_TOKEN}');")
        tab = await context.new_page()
        await tab.goto(herald.url + "/dashboard")

        banner = tab.get_by_test_id("alerts")
        await expect(banner).to_contain_text("mail-dlq is growing", timeout=15_000)
        await expect(banner.locator('[data-alert="HeraldDeadLettersGrowing"]')).to_have_count(1)
        await expect(tab.get_by_test_id("escalations")).to_contain_text("mail → mail-dlq")
        await expect(tab.get_by_test_id("tiers").locator('[data-queue="mail-dlq"]')).to_be_visible()
        await expect(tab.get_by_test_id("connection-rates")).to_contain_text("cluster /min")

        row = tab.locator(f'[data-testid="dead-letter"][data-id="{nid}"]')
        await row.get_by_role("button", name=f"Inspect email {nid}").click()
        record = tab.get_by_test_id("record")
        await expect(record).to_contain_text(user["email"])
        await expect(record).to_contain_text("/verify/")  # the email's text content
        await expect(record).to_contain_text("mail → mail-dlq")
        # From the stage timeline, back to the record.
        await record.get_by_role("button", name="Stage timeline").click()
        await tab.get_by_role("button", name=f"Record of email {nid}").first.click()
        await expect(tab.get_by_test_id("record")).to_contain_text(
            f"Welcome to Herald, {user['username']}"
        )

"""Client addresses come from forwarding headers only when a named load balancer sent them,
and failed sign-ins are limited per account as well as per address."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.cluster import haproxy
from herald.cluster.topology import Backend
from herald.core.redis import free_port
from tests.fixtures.herald import RunningHerald
from tests.fixtures.smtp import SmtpSink

FORGED = "203.0.113.66"


async def login_ip(herald: RunningHerald, user: dict[str, Any], **headers: str) -> str | None:
    """Sign in with these headers; the address Herald recorded for it."""
    answer = await herald.http.post(
        "/api/logins",
        json={"email": user["email"], "password": user["password"]},
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    logins = await herald.http.get(
        "/api/logins", params={"userId": user["userId"]}, headers=herald.admin()
    )
    mine = [r for r in logins.json()["items"] if r["loginId"] == answer.json()["loginId"]]
    return mine[0]["ipAddress"]  # type: ignore[no-any-return]


class TestForwardingHeaders:
    async def test_untrusted_x_forwarded_for_changes_no_limit_and_no_record(
        self, herald_factory: Any, smtp: SmtpSink
    ) -> None:
        herald = await herald_factory(rate_limit_login=3, rate_limit_window=30)
        attempts = [
            await herald.http.post(
                "/api/logins",
                json={"email": "victim@example.com", "password": "guess"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            for i in range(5)
        ]
        assert [a.status_code for a in attempts] == [401, 401, 401, 429, 429]

    async def test_login_history_and_alert_show_the_real_address(
        self, herald: RunningHerald, smtp: SmtpSink
    ) -> None:
        user = await herald.signup()
        assert await login_ip(herald, user, **{"X-Forwarded-For": FORGED}) == "127.0.0.1"
        alerts = await smtp.wait_for(user["email"], count=2)  # welcome, then the alert
        body = b"".join(m.content for m in alerts)  # type: ignore[misc]
        assert FORGED.encode() not in body and b"127.0.0.1" in body

    async def test_a_named_load_balancer_is_believed(self, herald_factory: Any) -> None:
        herald = await herald_factory(forwarded_allow_ips="127.0.0.1")
        user = await herald.signup()
        assert await login_ip(herald, user, **{"X-Forwarded-For": FORGED}) == FORGED

    @pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
    async def test_through_haproxy_the_client_cannot_forge_it(
        self, herald_factory: Any, tmp_path: Path
    ) -> None:
        """As `herald cluster up` runs it: HAProxy on this machine, trusted by the server."""
        herald = await herald_factory(forwarded_allow_ips="127.0.0.1")
        lb_port = free_port()
        cfg = haproxy.lb_config(
            herald.settings,
            [Backend("server1", "127.0.0.1", herald.settings.port)],
            bind=f"127.0.0.1:{lb_port}",
        )
        path = tmp_path / "haproxy.cfg"
        path.write_text(haproxy.render(cfg))
        lb = start_haproxy(path)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{lb_port}") as via_lb:
                await _until_up(via_lb)
                user = await herald.signup()
                answer = await via_lb.post(
                    "/api/logins",
                    json={"email": user["email"], "password": user["password"]},
                    headers={"X-Forwarded-For": FORGED},
                )
                assert answer.status_code == 201, answer.text
            logins = await herald.http.get(
                "/api/logins", params={"userId": user["userId"]}, headers=herald.admin()
            )
            assert [r["ipAddress"] for r in logins.json()["items"]] == ["127.0.0.1"]
        finally:
            lb.terminate()
            lb.wait(10)


def start_haproxy(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _until_up(client: httpx.AsyncClient, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if (await client.get("/api/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if loop.time() > deadline:
            raise AssertionError("HAProxy never passed a request")
        await asyncio.sleep(0.2)


class TestFailedLoginsPerAccount:
    async def test_many_addresses_one_account_is_limited(self, herald_factory: Any) -> None:
        herald = await herald_factory(forwarded_allow_ips="127.0.0.1", login_failures_per_account=3)
        user = await herald.signup()
        wrong = {"email": user["email"], "password": "not-it"}
        answers = [
            await herald.http.post(
                "/api/session", json=wrong, headers={"X-Forwarded-For": f"198.51.100.{i}"}
            )
            for i in range(4)
        ]
        assert [a.status_code for a in answers] == [401, 401, 401, 429]
        assert answers[3].headers["retry-after"]
        # Locked for the window even with the right password; other accounts are not.
        right = {"email": user["email"], "password": user["password"]}
        assert (await herald.http.post("/api/logins", json=right)).status_code == 429
        other = await herald.signup()
        good = {"email": other["email"], "password": other["password"]}
        assert (await herald.http.post("/api/logins", json=good)).status_code == 201

    async def test_successes_do_not_count(self, herald_factory: Any) -> None:
        herald = await herald_factory(login_failures_per_account=2)
        user = await herald.signup()
        right = {"username": user["username"], "password": user["password"]}
        for _ in range(4):
            assert (await herald.http.post("/api/session", json=right)).status_code == 201

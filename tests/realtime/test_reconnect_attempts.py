"""WS_MAX_RECONNECT_ATTEMPTS reaches clients (`GET /api/client-config`), and the demo client in a
real Chromium gives up after that many attempts, says so, and reconnects when asked to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.fixtures.browser import signed_in
from tests.fixtures.herald import make_settings, start_herald
from tests.fixtures.smtp import SmtpSink


async def test_client_config_carries_the_setting(tmp_path: Path, stack: dict[str, Any]) -> None:
    running, server, task = await start_herald(
        make_settings(tmp_path, ws_max_reconnect_attempts=7, **stack), workers=False
    )
    try:
        response = await running.http.get("/api/client-config")  # no token needed
        assert response.json() == {"wsMaxReconnectAttempts": 7, "wsHeartbeatInterval": 30000}
    finally:
        await running.http.aclose()
        server.should_exit = True
        await task


async def test_demo_client_gives_up_then_retries(
    tmp_path: Path,
    stack: dict[str, Any],
    smtp: SmtpSink,
    contexts: Any,  # noqa: F811 - the fixture imported above
) -> None:
    settings = make_settings(
        tmp_path,
        ws_max_reconnect_attempts=2,
        email_host="127.0.0.1",
        email_port=smtp.port,
        **stack,
    )
    running, server, task = await start_herald(settings)
    user = await running.member()
    tab = await signed_in(await contexts(), running, user)
    connection = tab.get_by_test_id("connection")
    retry = connection.get_by_role("button", name="Retry")
    await expect(retry).to_be_hidden()

    await running.http.aclose()
    server.should_exit = True  # Herald goes away: every attempt to come back is refused
    await task
    await expect(connection).to_contain_text("Offline: gave up after 2 attempts", timeout=20_000)
    await expect(retry).to_be_visible()

    running, server, task = await start_herald(settings)  # back, on the same port
    try:
        await retry.click()
        await expect(connection).to_contain_text("Live on", timeout=20_000)
        await expect(retry).to_be_hidden()
    finally:
        await running.http.aclose()
        server.should_exit = True
        await task

"""`herald try`: the seed's test scripts run once each against a live Herald."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from herald.core.redis import free_port
from tests.fixtures.herald import RunningHerald
from tests.fixtures.processes import clean_env


async def herald_try(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "herald", "try", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


class TestTry:
    async def test_each_script_passes_against_a_live_herald(self, herald: RunningHerald) -> None:
        steps = {
            "login-notification": "the login notification arrives on the socket",
            "friend-request-notification": "the sender hears of it live",
            "notification-toast": "the notification carries what the toast shows",
        }
        for script, step in steps.items():
            result = await herald_try(script, "--url", herald.url)
            assert result.returncode == 0, result.stdout + result.stderr
            lines = result.stdout.splitlines()
            assert lines[0] == f"herald try {script} against {herald.url}"
            assert any(line.startswith("  ok") and step in line for line in lines), lines
            assert "FAILED" not in result.stdout and lines[-1] == "passed"

    async def test_a_failing_step_is_named_and_exits_1(self) -> None:
        nowhere = f"http://127.0.0.1:{free_port()}"
        result = await herald_try("login-notification", "--url", nowhere, "--timeout", "3")
        assert result.returncode == 1
        assert "  FAILED  sign up a fresh user" in result.stdout
        assert result.stdout.splitlines()[-1] == "failed"

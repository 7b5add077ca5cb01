"""`herald serve` with nothing configured: SQLite, embedded Redis and the capture mailbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from herald.core.redis import free_port
from tests.fixtures.processes import clean_env, wait_healthy


def redis_children(data_dir: Path) -> list[int]:
    """Pids of redis-server processes whose data folder is this one."""
    out = subprocess.run(["pgrep", "-f", "redis-server"], capture_output=True, text=True).stdout
    pids = []
    for pid in out.split():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == str((data_dir / "redis").resolve()):
            pids.append(int(pid))
    return pids


@pytest.fixture
def serve(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "herald", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(HERALD_MAILBOX_PORT="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    yield process, url, tmp_path / "herald-data"
    if process.poll() is None:
        process.kill()
    process.wait(10)


class TestEmbeddedDefault:
    def test_signup_lands_in_capture_mailbox(self, serve) -> None:  # type: ignore[no-untyped-def]
        process, url, data_dir = serve
        health = wait_healthy(url, process)
        assert health["database"]["dialect"] == "sqlite"
        assert health["redis"]["embedded"] is True
        assert health["email"]["mode"] == "capture"
        assert (data_dir / "herald.db").exists()

        signup = httpx.post(
            f"{url}/api/signups",
            json={
                "username": "newcomer",
                "email": "newcomer@example.com",
                "password": "first-pass",
            },
        )
        assert signup.status_code == 201, signup.text
        token = (data_dir / "admin-token").read_text().strip()
        assert oct((data_dir / "admin-token").stat().st_mode)[-3:] == "600"
        headers = {"Authorization": f"Bearer {token}"}

        deadline = time.monotonic() + 30
        messages: list[dict] = []
        while time.monotonic() < deadline and not messages:
            messages = httpx.get(f"{url}/api/ops/mailbox", headers=headers).json()["messages"]
            time.sleep(0.2)
        [message] = messages
        assert message["to"] == ["newcomer@example.com"]
        assert message["subject"] == "Welcome to Herald, newcomer"
        full = httpx.get(f"{url}/api/ops/mailbox/{message['id']}", headers=headers).json()
        assert "/verify/" in full["text"] and "<h1>Welcome, newcomer</h1>" in full["html"]

        status = httpx.get(f"{url}/api/signups/1/welcome-email-status", headers=headers).json()
        assert status["welcomeEmail"]["status"] == "delivered"

    def test_embedded_redis_stops_with_herald(self, serve) -> None:  # type: ignore[no-untyped-def]
        process, url, data_dir = serve
        wait_healthy(url, process)
        assert len(redis_children(data_dir)) == 1
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        assert redis_children(data_dir) == []
        assert (data_dir / "redis" / "appendonly.aof").exists() or any(
            (data_dir / "redis").glob("appendonly*")
        )

    def test_embedded_redis_dies_even_when_herald_is_killed(self, serve) -> None:  # type: ignore[no-untyped-def]
        process, url, data_dir = serve
        wait_healthy(url, process)
        [pid] = redis_children(data_dir)
        process.kill()
        process.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and redis_children(data_dir):
            time.sleep(0.1)
        assert redis_children(data_dir) == [], f"redis-server {pid} outlived a killed Herald"


class TestBadSettings:
    @pytest.mark.parametrize(
        ("name", "value"),
        [("PORT", "eighty"), ("DATABASE_URL", "mysql://x/y"), ("RETRY_1_DELAY", "-5")],
    )
    def test_one_clear_line_and_non_zero_exit(self, tmp_path: Path, name: str, value: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "herald", "serve"],
            cwd=tmp_path,
            env=clean_env(**{name: value}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("herald: invalid setting") and name in lines[0]

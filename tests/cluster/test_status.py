"""`herald status` describes the Herald that runs: after `make run` (one `herald serve`) it
lists that server and its workers, checks no load balancer nobody started, and exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from herald.core.redis import free_port, running_embedded_url
from tests.fixtures.processes import clean_env, wait_healthy


class Served:
    def __init__(self, cwd: Path, env: dict[str, str], url: str) -> None:
        self.cwd, self.env, self.url = cwd, env, url
        self.data_dir = cwd / "herald-data"

    def herald(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "herald", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def status(self) -> tuple[int, dict[str, Any]]:
        result = self.herald("status", "--json")
        return result.returncode, json.loads(result.stdout)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Served]:
    """What `make run` starts: one `herald serve`, on the port the load balancer would take
    (both are 8000 by default), with nothing configured. The seed's server ports are left at
    their defaults (5001-5003): nothing of this test listens there."""
    port = free_port()
    env = {k: v for k, v in clean_env().items() if not k.startswith(("SERVER", "LOAD_BALANCER"))}
    env.update(
        PORT=str(port),
        LOAD_BALANCER_PORT=str(port),
        HERALD_MAILBOX_PORT="0",
        # Rare sweeps, so a stale heartbeat planted by a test stays until status has seen it.
        HERALD_PRESENCE_HEARTBEAT="30",
    )
    log = tmp_path / "serve.log"  # kept for the failure message: why a start failed
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "herald", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(tmp_path, env, f"http://127.0.0.1:{port}")
    try:
        try:
            wait_healthy(served.url, process)  # type: ignore[arg-type]
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its output:\n{log.read_text()[-3000:]}") from None
        yield served
    finally:
        process.terminate()
        process.wait(30)


def wait_for_telemetry(served: Served) -> dict[str, Any]:
    """The process publishes its first telemetry snapshot within a second of starting."""
    deadline = time.monotonic() + 15
    while True:
        code, report = served.status()
        if report["live"] or time.monotonic() > deadline:
            return {"code": code, **report}
        time.sleep(0.5)


class TestStatusOfMakeRun:
    def test_healthy_serve_is_all_good(self, make_run: Served) -> None:
        report = wait_for_telemetry(make_run)
        assert report["code"] == 0, report["problems"]
        assert report["problems"] == [] and report["discovered"] is True
        [server] = report["servers"]
        assert server["url"] == make_run.url and server["status"] == "up"
        assert server["heartbeat"] is True
        assert report["loadBalancer"] is None  # `herald serve` on 8000 is no load balancer
        [process] = report["live"]
        assert process["serverId"] == server["serverId"] and process["api"] and process["workers"]
        assert all(q["workerConnections"] for q in report["queues"] if q["tier"] == "main")
        text = make_run.herald("status")
        assert text.returncode == 0, text.stdout
        assert "all good" in text.stdout and "PROBLEMS" not in text.stdout
        assert ":5001" not in text.stdout and "load balancer  none" in text.stdout

    def test_a_server_whose_heartbeat_stopped_is_a_problem(self, make_run: Served) -> None:
        url = running_embedded_url(make_run.data_dir)
        assert url is not None
        client = redis.Redis.from_url(url)
        # What a crashed server leaves: its announcement, and no live heartbeat key.
        client.hset(
            "herald:servers",
            "ghost",
            json.dumps(
                {
                    "pid": 1,
                    "heartbeatAt": time.time() - 60,
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "hostname": "elsewhere",
                }
            ),
        )
        code, report = make_run.status()
        assert code == 1
        ghost = next(s for s in report["servers"] if s["name"] == "ghost")
        assert ghost["heartbeat"] is False
        assert any("ghost" in p and "heartbeat" in p for p in report["problems"])
        client.close()

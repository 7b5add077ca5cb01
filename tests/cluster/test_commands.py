"""`herald lb-config`, `herald cluster up` when something cannot start, and a worker's SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from herald.notifications.models import EmailNotification
from tests.fixtures.cluster import cluster_env
from tests.fixtures.herald import RunningHerald
from tests.fixtures.processes import clean_env, processes_of
from tests.fixtures.smtp import SmtpSink
from tests.fixtures.waiting import eventually


def herald(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "herald", "worker"], env=env, stdout=out, stderr=out
        )


class TestLbConfig:
    def test_production_config_is_accepted_by_haproxy(self, tmp_path: Path) -> None:
        result = herald(
            "lb-config",
            "--server",
            "app1=10.0.0.11:5001",
            "--server",
            "app2=10.0.0.12:5001",
            "--bind",
            "*:80",
            env=clean_env(LOAD_BALANCER_PORT="8080"),
        )
        assert result.returncode == 0, result.stderr
        config = result.stdout
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        for line in (
            "balance roundrobin",
            "cookie SERVERID insert indirect nocache",
            "http-check send meth GET uri /api/health",
            "timeout tunnel 1h",
            "option forwardfor",
            "http-response set-header X-Served-By-LB %s",
            "bind *:80",
            "server app1 10.0.0.11:5001 cookie app1",
            "server app2 10.0.0.12:5001 cookie app2",
            "log /dev/log local0",
        ):
            assert line in config

    def test_default_servers_are_the_seeds_ports(self) -> None:
        result = herald("lb-config", env=clean_env())
        for i in (1, 2, 3):
            assert f"server server{i} 127.0.0.1:500{i} cookie server{i}" in result.stdout
        assert "bind *:8000" in result.stdout

    def test_a_bad_server_is_one_line(self) -> None:
        result = herald("lb-config", "--server", "nonsense", env=clean_env())
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and "host:port" in result.stderr


class TestClusterUpFailures:
    def test_a_busy_port_is_refused_before_anything_starts(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        env = cluster_env(data)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", int(env["LOAD_BALANCER_PORT"])))
            busy.listen()
            result = herald("cluster", "up", env=env)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert f"port {env['LOAD_BALANCER_PORT']} (the load balancer) is already in use" in line
        assert processes_of(data) == []

    def test_what_started_is_stopped_when_a_later_step_fails(self, tmp_path: Path) -> None:
        """HAProxy (a stand-in that accepts its configuration, then cannot run) dies after Redis,
        the servers and the worker are up: `up` stops them all and says why in one line."""
        fake = tmp_path / "haproxy"
        fake.write_text(
            '#!/bin/sh\n[ "$1" = "-c" ] && exit 0\necho "cannot bind socket" >&2\nexit 1\n'
        )
        fake.chmod(0o755)
        data = tmp_path / "data"
        env = cluster_env(data, HERALD_CLUSTER_SERVERS="1", HERALD_HAPROXY=str(fake))
        result = herald("cluster", "up", env=env)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert "haproxy stopped while starting" in line and "cannot bind socket" in line
        assert "server1" in result.stdout and "workers" in result.stdout  # they had started
        assert processes_of(data) == []
        assert not (data / "cluster" / "cluster.json").exists()


class TestWorkerShutdown:
    async def test_sigterm_lets_the_job_in_flight_finish(
        self, herald_factory: Any, smtp: SmtpSink, stack: dict[str, Any], tmp_path: Path
    ) -> None:
        """A worker told to stop while it is sending an email finishes sending it, records it
        delivered, and only then exits: nothing is left active or sent twice."""
        api: RunningHerald = await herald_factory(workers=False)
        smtp.delay = 3.0  # the SMTP server takes its time: the job is in flight for 3 s
        s = api.settings
        env = clean_env(
            HERALD_DATA_DIR=str(s.data_dir.resolve()),
            HERALD_ADMIN_TOKEN="x",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=str(smtp.port),
            HERALD_SERVER_ID="worker-under-test",
            PYTHONUNBUFFERED="1",
        )
        if stack:
            env |= {"DATABASE_URL": stack["database_url"], "REDIS_URL": stack["redis_url"]}
        log = tmp_path / "worker.log"
        worker = start_worker(env, log)
        try:

            async def ready() -> bool:
                return "Herald workers running" in log.read_text()

            await eventually(ready, timeout=60)
            user = await api.signup()
            email_id = user["welcomeEmail"]["notificationId"]

            async def in_flight() -> bool:
                counts = await api.herald.queues.counts()
                return counts["mail"]["active"] == 1

            await eventually(in_flight, timeout=20, interval=0.02)
            worker.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            code = await asyncio.to_thread(worker.wait, 30)
            took = time.monotonic() - stopped_at
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        assert code == 0, log.read_text()[-2000:]
        assert took > 1.0  # it waited for the SMTP server rather than dropping the job
        assert len(smtp.to(user["email"])) == 1
        async with api.herald.db() as session:
            row = await session.get(EmailNotification, email_id)
        assert row is not None and row.status == "delivered"
        counts = (await api.herald.queues.counts())["mail"]
        assert counts["active"] == counts["waiting"] == 0

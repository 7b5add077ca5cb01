"""`herald cluster up` / `down`: the whole cluster (API servers, workers, HAProxy) on one machine.

`up` starts, each in a session of its own so they outlive the command:
1. the embedded Redis when none is configured (never tied to `up`'s own life, unlike the one
   `herald serve` embeds), recorded so `down` can stop it;
2. the migrations, once, before any server starts;
3. N × `herald api --port SERVERn_PORT` (server ids server1..N, which are also HAProxy's names
   and sticky-cookie values), waited for until `/api/health` answers 200;
4. M × `herald worker`, waited for until they have registered with the queues;
5. HAProxy on LOAD_BALANCER_PORT with the generated configuration, waited for until it answers
   and sees every server up.
If any step fails, everything started so far is stopped and the error is one line. What was
started is recorded in `<data>/cluster/cluster.json`; logs are in `<data>/cluster/logs/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from herald.cluster import haproxy
from herald.cluster.processes import Managed, Manifest, adopt, died, spawn, stop
from herald.cluster.topology import Backend, ClusterError, local_backends
from herald.core.config import Settings
from herald.core.db import run_migrations
from herald.core.redis import EmbeddedRedis, running_embedded_url, wait_for_redis

# The order `down` stops things in: stop taking traffic, then let servers close their sockets
# and workers finish their jobs while Redis and the database are still there.
STOP_ORDER = ("haproxy", "api", "worker", "redis")
# What `herald worker` prints once its queue workers run (herald/cli.py, _run_workers).
WORKERS_READY = "Herald workers running"


@dataclass(frozen=True)
class Layout:
    """Where a cluster keeps its state under the data folder."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        return cls(settings.data_dir.resolve() / "cluster")

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def stats_socket(self) -> Path:
        return self.root / "haproxy.sock"

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.root)


def up(settings: Settings, say: Callable[[str], None] = print) -> list[Managed]:
    layout = Layout.of(settings)
    layout.root.mkdir(parents=True, exist_ok=True)
    _refuse_if_running(layout)
    backends = local_backends(settings)
    _check_ports_free(settings, backends)
    lb_url = f"http://{backends[0].host}:{settings.load_balancer_port}"
    layout.haproxy_cfg.write_text(
        haproxy.render(haproxy.lb_config(settings, backends, stats_socket=layout.stats_socket))
    )
    haproxy.validate(settings.haproxy_binary, layout.haproxy_cfg)

    started: list[Managed] = []
    extra = {
        "loadBalancer": lb_url,
        "servers": [{"name": b.name, "url": b.url} for b in backends],
        "statsSocket": str(layout.stats_socket),
        "haproxyConfig": str(layout.haproxy_cfg),
    }

    def record(process: Managed) -> None:
        started.append(process)
        layout.manifest.save(started, **extra)  # saved as we go: `down` can clean up a crash

    deadline = time.monotonic() + settings.cluster_start_timeout
    try:
        redis_url = _redis(settings, layout, record, deadline)
        say(f"redis     {_without_password(redis_url)}")
        try:
            run_migrations(settings.effective_database_url)
        except Exception as exc:
            raise ClusterError(f"migrations failed: {type(exc).__name__}: {exc}") from None
        _spawn_herald(settings, layout, backends, record)
        for b in backends:
            _wait_healthy(b, _find(started, b.name), deadline)
            say(f"{b.name:9} {b.url}")
        _wait_workers(started, deadline)
        say(f"workers   {settings.cluster_workers} process(es)")
        argv = [settings.haproxy_binary, "-db", "-f", str(layout.haproxy_cfg)]
        lb_port = settings.load_balancer_port
        record(
            spawn(
                "haproxy", "haproxy", argv, env=dict(os.environ), log_dir=layout.logs, port=lb_port
            )
        )
        _wait_balancer(lb_url, layout.stats_socket, backends, _find(started, "haproxy"), deadline)
        say(f"haproxy   {lb_url}")
    except BaseException:
        stop(_in_stop_order(started), timeout=15)
        layout.manifest.remove()
        raise
    return started


def down(settings: Settings, say: Callable[[str], None] = print) -> list[Managed]:
    """Stop exactly what `up` recorded, in STOP_ORDER; returns what was running."""
    layout = Layout.of(settings)
    recorded = layout.manifest.load()
    running = [p for p in recorded if p.alive]
    for role in STOP_ORDER:  # one role at a time; the processes of a role all at once
        group = [p for p in running if p.role == role]
        killed = stop(group, timeout=30)
        for p in group:
            say(f"stopped {p.name} (pid {p.pid}){' by SIGKILL' if p in killed else ''}")
    if any(p.role == "redis" for p in recorded):
        (settings.data_dir / "redis" / "redis.url").unlink(missing_ok=True)
    layout.manifest.remove()
    return running


def _spawn_herald(
    settings: Settings, layout: Layout, backends: list[Backend], record: Callable[[Managed], None]
) -> None:
    """The API servers and the workers, all started before any is waited for: they boot in
    parallel."""
    env = _child_env(settings)
    herald = [sys.executable, "-m", "herald"]
    for b in backends:
        # The servers trust X-Forwarded-For from the HAProxy started here, on this machine.
        server_env = {"FORWARDED_ALLOW_IPS": "127.0.0.1", **env, "HERALD_SERVER_ID": b.name}
        argv = [*herald, "api", "--port", str(b.port)]
        record(spawn(b.name, "api", argv, env=server_env, log_dir=layout.logs, port=b.port))
    for i in range(1, settings.cluster_workers + 1):
        worker_env = {**env, **_worker_env(settings, i)}
        argv = [*herald, "worker"]
        record(spawn(f"worker{i}", "worker", argv, env=worker_env, log_dir=layout.logs))


def _in_stop_order(processes: list[Managed]) -> list[Managed]:
    return sorted(processes, key=lambda p: STOP_ORDER.index(p.role))


def _refuse_if_running(layout: Layout) -> None:
    alive = [p for p in layout.manifest.load() if p.alive]
    if alive:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in alive)
        raise ClusterError(
            f"a cluster already runs from {layout.root}: {names}; `herald cluster down` first"
        )
    layout.manifest.remove()


def _check_ports_free(settings: Settings, backends: list[Backend]) -> None:
    wanted = [(b.name, b.port) for b in backends]
    wanted.append(("the load balancer", settings.load_balancer_port))
    if settings.uses_capture_mailbox and settings.mailbox_port:
        wanted.append(("the capture mailbox", settings.mailbox_port))
    ports = [port for _, port in wanted]
    for name, port in wanted:
        if ports.count(port) > 1:
            raise ClusterError(f"port {port} is given to more than one process ({name})")
        with socket.socket() as s:
            # As the servers themselves do: connections in TIME_WAIT do not hold the port.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((settings.host, port))
            except OSError:
                raise ClusterError(f"port {port} ({name}) is already in use") from None


def _redis(
    settings: Settings, layout: Layout, record: Callable[[Managed], None], deadline: float
) -> str:
    """The configured Redis, checked; else an embedded one started for the cluster."""
    configured = settings.configured_redis_url
    if configured:
        try:
            asyncio.run(wait_for_redis(configured, max(1.0, deadline - time.monotonic())))
        except RuntimeError:
            raise ClusterError("the configured Redis does not answer") from None
        return configured
    if running_embedded_url(settings.data_dir):
        raise ClusterError(
            f"an embedded Redis already runs for {settings.data_dir} "
            "(is `herald serve` running on this data folder?)"
        )
    embedded = EmbeddedRedis(settings.data_dir, settings.redis_server, die_with_parent=False)
    try:
        url = asyncio.run(embedded.start(timeout=max(1.0, deadline - time.monotonic())))
    except RuntimeError as exc:
        raise ClusterError(f"embedded Redis did not start: {exc}") from None
    assert embedded.process is not None
    record(adopt("redis", "redis", embedded.process.pid, embedded.dir / "redis.log", embedded.port))
    return url


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # a log line is in the file when it happens
    # Every process must agree on the data folder whatever its working directory.
    env["HERALD_DATA_DIR"] = str(settings.data_dir.resolve())
    return env


def _worker_env(settings: Settings, index: int) -> dict[str, str]:
    env = {"HERALD_SERVER_ID": f"worker{index}"}
    if settings.uses_capture_mailbox and index > 1:
        # Only one process can listen on HERALD_MAILBOX_PORT: the first worker does; the others
        # run their own capture mailbox on a free port. All of them store into the same Maildir.
        env["HERALD_MAILBOX_PORT"] = "0"
    return env


def _find(processes: list[Managed], name: str) -> Managed:
    return next(p for p in processes if p.name == name)


def _died(process: Managed) -> ClusterError:
    return died(process.name, Path(process.log))


def _timed_out(what: str, log: str) -> ClusterError:
    return ClusterError(f"{what} did not become ready in time (log: {log})")


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any] | None]:
    """GET a JSON document; (status, body), or (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(exc.read())
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


def _wait_healthy(backend: Backend, process: Managed, deadline: float) -> None:
    while True:
        code, body = get_json(f"{backend.url}/api/health")
        if code == 200 and body and body.get("serverId") == backend.name:
            return
        if not process.alive:
            raise _died(process)
        if time.monotonic() > deadline:
            raise _timed_out(backend.name, process.log)
        time.sleep(0.2)


def _wait_workers(started: list[Managed], deadline: float) -> None:
    """Until every worker process says its queue workers run (`herald worker` prints
    WORKERS_READY once Herald.start has returned)."""
    for process in (p for p in started if p.role == "worker"):
        while WORKERS_READY not in _log_since_start(process):
            if not process.alive:
                raise _died(process)
            if time.monotonic() > deadline:
                raise _timed_out(process.name, process.log)
            time.sleep(0.2)


def _log_since_start(process: Managed) -> str:
    with open(process.log, "rb") as f:
        f.seek(process.log_from)
        return f.read().decode(errors="replace")


def _wait_balancer(
    url: str, stats_socket: Path, backends: list[Backend], process: Managed, deadline: float
) -> None:
    names = {b.name for b in backends}
    while True:
        if not process.alive:
            raise _died(process)
        code, _ = get_json(f"{url}/api/health")
        if code == 200:
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                states = asyncio.run(haproxy.server_states(stats_socket))
                if {n for n, s in states.items() if s.up} >= names:
                    return
        if time.monotonic() > deadline:
            raise _timed_out("haproxy", process.log)
        time.sleep(0.2)


def _without_password(url: str) -> str:
    """The URL as it may be shown: a password in it is replaced by `***`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))

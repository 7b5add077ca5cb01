"""Detached processes of a cluster: started in their own session, recorded, and stopped by pid.

`herald cluster up` returns while what it started keeps running, so each process is recorded in
`<data>/cluster/cluster.json` with its pid *and* its kernel start time: `down` signals a pid only
if it is still the very process `up` started, never one that reused its number.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from herald.cluster.topology import ClusterError


@dataclass
class Managed:
    name: str  # server1, worker1, haproxy, redis
    role: str  # api | worker | haproxy | redis
    pid: int
    started: int  # start time in clock ticks since boot (/proc/<pid>/stat, field 22)
    log: str
    port: int | None = None
    log_from: int = 0  # where this run's output starts in the (appended) log

    @property
    def alive(self) -> bool:
        return start_time(self.pid) == self.started


def start_time(pid: int) -> int | None:
    """The process's start time, or None if it is gone or a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing paren do not.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def spawn(
    name: str,
    role: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    port: int | None = None,
) -> Managed:
    """Start a process in a session of its own (so it outlives this command and a Ctrl-C in
    this terminal), its output appended to `<log_dir>/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        log_from = out.tell()
        process = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = start_time(process.pid)
    if started is None:
        raise died(name, log)
    return Managed(name, role, process.pid, started, str(log), port, log_from)


def adopt(name: str, role: str, pid: int, log: Path, port: int | None = None) -> Managed:
    """Record a process started some other way (the cluster's Redis)."""
    started = start_time(pid)
    if started is None:
        raise died(name, log)
    return Managed(name, role, pid, started, str(log), port)


def died(name: str, log: Path) -> ClusterError:
    return ClusterError(
        f"{name} stopped while starting; last log line: {last_line(log)!r} (log: {log})"
    )


def last_line(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""
    return ""


def stop(processes: Iterable[Managed], *, timeout: float = 30.0) -> list[Managed]:
    """SIGTERM each live process, wait up to `timeout`, then SIGKILL what remains.
    Returns the processes that had to be killed."""
    running = [p for p in processes if p.alive]
    for p in running:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.alive for p in running):
        time.sleep(0.1)
    killed = [p for p in running if p.alive]
    for p in killed:
        _signal(p, signal.SIGKILL)
    while any(p.alive for p in killed) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    return killed


def _signal(process: Managed, sig: signal.Signals) -> None:
    if process.alive:  # checked again right before: never signal a reused pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


class Manifest:
    """`<data>/cluster/cluster.json`: what `up` started, in start order."""

    def __init__(self, cluster_dir: Path):
        self.path = cluster_dir / "cluster.json"

    def load(self) -> list[Managed]:
        try:
            rows = json.loads(self.path.read_text())["processes"]
        except (OSError, ValueError, KeyError):
            return []
        return [Managed(**row) for row in rows]

    def save(self, processes: Sequence[Managed], **extra: object) -> None:
        body = {"processes": [asdict(p) for p in processes], **extra}
        draft = self.path.with_suffix(".tmp")
        draft.write_text(json.dumps(body, indent=2))
        draft.replace(self.path)  # readers never see a half-written manifest

    def extra(self) -> dict[str, object]:
        try:
            body = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in body.items() if k != "processes"}

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

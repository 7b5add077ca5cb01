"""`herald chaos --quick`: the fault runs on a fresh local Herald, end to end, as an operator
runs them. On PostgreSQL when the tests have one (so its connections are terminated too), with
the embedded Redis (restarted by the run: the shared one never is)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.stacks import PG_URL

SCENARIOS = ("worker-killed", "db-connections-terminated", "redis-restarted-empty", "api-killed")


def processes_of(work_dir: str) -> list[int]:
    """Processes still running with this data folder in their environment."""
    marker = f"HERALD_DATA_DIR={work_dir}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


@pytest.mark.timeout(240)
def test_quick_chaos_loses_nothing_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    if PG_URL:
        env["DATABASE_URL"] = PG_URL
    run = subprocess.run(
        [sys.executable, "-m", "herald", "chaos", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )
    print(run.stdout, run.stderr)
    assert run.returncode == 0, run.stdout + run.stderr
    table = run.stdout.split("\nscenario", 1)[1]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:] if line.strip()}
    assert set(rows) == set(SCENARIOS)
    for name in SCENARIOS:
        if name == "db-connections-terminated" and not PG_URL:
            assert "skipped" in rows[name]
            continue
        accepted, lost = int(rows[name][1]), int(rows[name][2])
        assert accepted >= 30 and lost == 0, rows[name]
    if PG_URL:  # a terminated connection is retried or answered 503, never 500
        assert "HTTP 500" not in table
    work = re.search(r"a fresh Herald in (\S+)", run.stdout)
    assert work is not None
    assert processes_of(work.group(1)) == []
    assert not Path(work.group(1)).exists()

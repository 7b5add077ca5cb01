"""The bench's top: run the chosen scenarios one after another and write the report."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from herald.bench import report
from herald.bench.scenarios import SCENARIOS, Context, Sizes, start_sink
from herald.bench.stack import BENCH_SETTINGS


async def run(names: list[str], *, quick: bool, sizes: Sizes, database_url: str | None,
              redis_url: str | None, command: str, say: Callable[[str], None],
              profile_dir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    sink, smtp_port = await start_sink()
    ctx = Context(work, database_url, redis_url, sizes, sink, smtp_port, say, profile_dir)
    results: dict[str, Any] = {}
    failed: list[str] = []
    try:
        for name in names:
            say(f"{name}:")
            t0 = time.monotonic()
            try:
                results[name] = await SCENARIOS[name](ctx)
            except Exception as exc:  # one failed scenario must not hide the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
            say(f"  {json.dumps(results[name])[:400]} ({time.monotonic() - t0:.0f} s)")
    finally:
        await asyncio.to_thread(sink.stop)
        if failed:  # the Herald processes' logs say why
            say(f"logs of {', '.join(failed)} kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": report.machine(),
        "database": "PostgreSQL (scratch database)" if database_url else "SQLite (WAL)",
        "redis": "Redis at REDIS_URL" if redis_url else "embedded Redis (append-only file)",
        "settings": BENCH_SETTINGS,
        "scenarios": results,
        "missing": report.missing(results),
    }

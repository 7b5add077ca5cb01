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
from herald.bench.peer import prepare as prepare_peer
from herald.bench.scenarios import SCENARIOS, Context, Sizes, start_sink
from herald.bench.stack import BENCH_SETTINGS


async def run(
    names: list[str],
    *,
    quick: bool,
    sizes: Sizes,
    database_url: str | None,
    redis_url: str | None,
    command: str,
    say: Callable[[str], None],
    profile_dir: Path | None = None,
    peer: Path | None = None,
) -> dict[str, Any]:
    """Each scenario on Herald; with `peer` (the seedstack's folder), then on the peer too, in
    the same run, so the ratios between them travel where absolute figures do not."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    sink, smtp_port = await start_sink()
    ctx = Context(work, database_url, redis_url, sizes, sink, smtp_port, say, profile_dir)
    failed: list[str] = []
    peer_results: dict[str, Any] = {}
    try:
        results = await _scenarios(ctx, names, failed)
        if peer is not None:
            say("the peer (seedstack):")
            ctx.peer = await asyncio.to_thread(prepare_peer, peer, work)
            peer_results = await _scenarios(ctx, [n for n in names if n in PEER_SCENARIOS], failed)
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
        "peer": peer_results,
        "missing": report.missing(results),
    }


# What the peer can run: the ceiling measures Herald's own engines.
PEER_SCENARIOS = ("ingest", "inapp", "knee", "email", "sockets", "quiet")


async def _scenarios(ctx: Context, names: list[str], failed: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        ctx.say(f"{name}:")
        t0 = time.monotonic()
        try:
            results[name] = await SCENARIOS[name](ctx)
        except Exception as exc:  # one failed scenario must not hide the others' figures
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name if ctx.peer is None else f"peer {name}")
        ctx.say(f"  {json.dumps(results[name])[:400]} ({time.monotonic() - t0:.0f} s)")
    return results

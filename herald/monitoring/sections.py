"""The monitoring sections of the cluster's one-minute summary: escalations per tier, connection
analytics and queue waits.

They are read from the same mergeable window bins as the components (`metrics.py` names them
`escalation:`, `connection:` and `wait:`), so they cover every live process, workers included,
and `herald status` computes them from Redis exactly as an API server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herald.core.config import Settings
from herald.notifications.ladder import ladder
from herald.notifications.models import Channel
from herald.telemetry.metrics import CONNECTION, ESCALATION, MONITORING_PREFIXES, WAIT
from herald.telemetry.window import Bin, merged

CONNECTION_KINDS = {
    "connect": "connects",
    "disconnect": "disconnects",
    "reconnect": "reconnections",
}


def split(bins: Mapping[str, Bin]) -> tuple[dict[str, Bin], dict[str, Bin]]:
    """(components, monitoring counts): the window holds both."""
    components = {c: b for c, b in bins.items() if not c.startswith(MONITORING_PREFIXES)}
    counts = {c: b for c, b in bins.items() if c.startswith(MONITORING_PREFIXES)}
    return components, counts


def _per_minute(count: int, covered: float) -> float:
    return round(count * 60 / max(covered, 1.0), 2)


def _channel_of(settings: Settings, queue: str) -> str:
    for channel in Channel:
        if any(t.queue == queue for t in ladder(settings, channel)):
            return channel.value
    return "unknown"


def escalations(
    settings: Settings,
    counts: Mapping[str, Bin],
    covered: float,
    queues: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    """Escalations per minute between each pair of tiers, and per retry tier and DLQ: how many
    came in per minute and how many jobs are in it now."""
    moves = []
    inflow: dict[str, int] = {}
    for name, b in sorted(counts.items()):
        if not name.startswith(ESCALATION):
            continue
        from_queue, _, to_queue = name.removeprefix(ESCALATION).partition(">")
        channel = _channel_of(settings, from_queue)
        moves.append(
            {
                "channel": channel,
                "fromQueue": from_queue,
                "toQueue": to_queue,
                "count": b.count,
                "perMinute": _per_minute(b.count, covered),
            }
        )
        inflow[to_queue] = inflow.get(to_queue, 0) + b.count
    tiers = []
    for channel in Channel:
        for tier in ladder(settings, channel)[1:]:
            jobs = queues.get(tier.queue, {})
            tiers.append(
                {
                    "channel": channel.value,
                    "queue": tier.queue,
                    "tier": "dlq" if tier.is_dead_letter else f"retry-{tier.index}",
                    "inflowPerMinute": _per_minute(inflow.get(tier.queue, 0), covered),
                    "current": sum(jobs.get(s, 0) for s in ("waiting", "active", "delayed")),
                }
            )
    return {"perMinute": moves, "tiers": tiers}


def _rates(counts: Mapping[str, Bin], covered: float) -> dict[str, Any]:
    """Counts over the window, and per minute (over the seconds the window covers so far)."""
    seen = {
        label: counts[CONNECTION + kind].count if CONNECTION + kind in counts else 0
        for kind, label in CONNECTION_KINDS.items()
    }
    return {
        "lastMinute": seen,
        "perMinute": {label: _per_minute(n, covered) for label, n in seen.items()},
    }


def connection_rates(
    snapshots: list[dict[str, Any]], counts: Mapping[str, Bin], covered: float
) -> dict[str, Any]:
    """Connects, disconnects and reconnections per minute, for the cluster and per server."""
    by_server: dict[str, list[dict[str, Bin]]] = {}
    server_covered: dict[str, float] = {}
    for s in snapshots:
        if not s["roles"]["api"]:
            continue
        bins = {c: Bin.from_json(b) for c, b in s["minute"].items() if c.startswith(CONNECTION)}
        by_server.setdefault(s["serverId"], []).append(bins)
        server_covered[s["serverId"]] = max(server_covered.get(s["serverId"], 1.0), s["covered"])
    return {
        "cluster": _rates(counts, covered),
        "servers": [
            {"serverId": server, **_rates(merged(bins), server_covered[server])}
            for server, bins in sorted(by_server.items())
        ],
    }


def queue_wait(counts: Mapping[str, Bin]) -> dict[str, dict[str, Any]]:
    """How long jobs waited in each queue before their first attempt, over the last minute."""
    return {
        name.removeprefix(WAIT): {
            "count": b.count,
            "p50Ms": b.percentile(0.5),
            "p95Ms": b.percentile(0.95),
            "p99Ms": b.percentile(0.99),
        }
        for name, b in sorted(counts.items())
        if name.startswith(WAIT)
    }


def minute(
    settings: Settings, snapshots: list[dict[str, Any]], queues: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """The last minute across these processes' snapshots: the components and the monitoring
    sections. What `GET /api/ops/metrics` answers with and `herald status` checks."""
    covered = max((float(s["covered"]) for s in snapshots), default=1.0)
    bins = merged([{c: Bin.from_json(b) for c, b in s["minute"].items()} for s in snapshots])
    components, counts = split(bins)
    return {
        "windowSeconds": covered,
        "components": {c: b.summary(covered) for c, b in sorted(components.items())},
        **sections(settings, snapshots, counts, covered, queues),
    }


def sections(
    settings: Settings,
    snapshots: list[dict[str, Any]],
    counts: Mapping[str, Bin],
    covered: float,
    queues: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    return {
        "escalations": escalations(settings, counts, covered, queues),
        "connectionRates": connection_rates(snapshots, counts, covered),
        "queueWait": queue_wait(counts),
    }

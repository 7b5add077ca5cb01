"""What should make an operator look: the conditions behind the dashboard's banner and the
warnings of `herald status`, the same ones `deploy/prometheus/alerts.yml` alerts on.

Each check is a small function from `Facts` (what the cluster looks like over the last minute)
to the conditions it finds; `CHECKS` lists them. `observe` gathers the facts from Redis, the
same way for the API (`GET /api/ops/alerts`, the dashboard's banner) and for `herald status`
(critical conditions are its problems, exit 1; warnings are listed and exit 0). To watch for
something new, add what it needs to `Facts` and to `observe`, write a check, and append it to
`CHECKS`; give it the name of its rule in alerts.yml when Prometheus has one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from herald.core.config import Settings
from herald.monitoring import sections
from herald.monitoring.aggregator import live_snapshots
from herald.realtime.presence import Presence

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from herald.delivery.queues import Queues

# The thresholds, the same as in deploy/prometheus/alerts.yml (which uses 5-minute rates).
API_ERROR_RATE = 0.05  # share of API answers that are 5xx
DELIVERY_FAILURE_RATE = 0.25  # share of channel sends that failed (in-app: offline counts)
QUEUE_WAIT_P95_SECONDS = 30.0  # how long a job may wait for a worker
MIN_SAMPLES = 10  # below this many events in the minute a rate says nothing


@dataclass(frozen=True)
class Condition:
    alert: str  # its rule's name in alerts.yml
    severity: Literal["warning", "critical"]
    message: str

    def to_json(self) -> dict[str, str]:
        return {"alert": self.alert, "severity": self.severity, "message": self.message}


@dataclass(frozen=True)
class Facts:
    components: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # last minute
    escalations: Mapping[str, Any] = field(default_factory=dict)  # monitoring.escalations
    queue_wait: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    queues: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # jobs per state
    heartbeats: Mapping[str, bool] = field(default_factory=dict)  # API server -> beating
    redis_up: bool = True
    database_up: bool = True


async def observe(settings: Settings, redis: Redis, queues: Queues, *, database_up: bool) -> Facts:
    """The cluster's last minute, read from Redis (`redis` decodes responses): every live
    process's telemetry snapshot, the queues, and the API servers' presence heartbeats."""
    try:
        await redis.ping()
    except Exception:
        return Facts(redis_up=False, database_up=database_up)
    counts = await queues.counts()
    minute = sections.minute(settings, await live_snapshots(redis, time.time()), counts)
    announced = await Presence(redis, "observer").announced()
    return Facts(
        components=minute["components"],
        escalations=minute["escalations"],
        queue_wait=minute["queueWait"],
        queues=counts,
        heartbeats={server: bool(info["alive"]) for server, info in announced.items()},
        redis_up=True,
        database_up=database_up,
    )


Check = Callable[[Facts], Iterable[Condition]]


def _error_rate_above(f: Facts, component: str, threshold: float) -> float | None:
    """The component's error rate over the last minute when it exceeds `threshold` on enough
    events to mean something; else None."""
    c = f.components.get(component)
    rate = (c["errorRate"] or 0) if c and c["count"] >= MIN_SAMPLES else 0
    return rate if rate > threshold else None


def api_errors(f: Facts) -> Iterable[Condition]:
    rate = _error_rate_above(f, "api", API_ERROR_RATE)
    if rate is not None:
        yield Condition(
            "HeraldApiErrorRate",
            "warning",
            f"{rate:.0%} of API answers were 5xx in the last minute",
        )


def delivery_failures(f: Facts) -> Iterable[Condition]:
    for channel in ("email", "inapp"):
        rate = _error_rate_above(f, f"channel:{channel}", DELIVERY_FAILURE_RATE)
        if rate is not None:
            yield Condition(
                "HeraldDeliveryFailureRate",
                "warning",
                f"{rate:.0%} of {channel} sends failed in the last minute",
            )


def dead_letters_growing(f: Facts) -> Iterable[Condition]:
    for tier in f.escalations.get("tiers", []):
        if tier["tier"] == "dlq" and tier["inflowPerMinute"] > 0:
            yield Condition(
                "HeraldDeadLettersGrowing",
                "warning",
                f"{tier['queue']} is growing ({tier['inflowPerMinute']:g}/min; "
                f"{tier['current']} waiting for review)",
            )


def queue_wait(f: Facts) -> Iterable[Condition]:
    for queue, wait in f.queue_wait.items():
        p95 = wait.get("p95Ms")
        if p95 is not None and p95 > QUEUE_WAIT_P95_SECONDS * 1000:
            yield Condition(
                "HeraldQueueWaitHigh",
                "warning",
                f"jobs in {queue} waited {p95 / 1000:.0f} s (p95) for a worker",
            )


def heartbeats(f: Facts) -> Iterable[Condition]:
    for server, beating in sorted(f.heartbeats.items()):
        if not beating:
            yield Condition(
                "HeraldServerHeartbeatMissing",
                "critical",
                f"API server {server} stopped its presence heartbeat",
            )


def delayed_jobs_overdue(f: Facts) -> Iterable[Condition]:
    # A retry tier's job long past its due time: no worker is waiting on that queue.
    for queue, states in sorted(f.queues.items()):
        if states.get("overdue"):
            yield Condition(
                "HeraldDelayedJobsOverdue",
                "critical",
                f"{states['overdue']} delayed job(s) in {queue} are overdue: "
                "no worker promotes them",
            )


def dependencies(f: Facts) -> Iterable[Condition]:
    if not f.redis_up:
        yield Condition("HeraldRedisDown", "critical", "Redis does not answer")
    if not f.database_up:
        yield Condition("HeraldDatabaseDown", "critical", "the database does not answer")


CHECKS: list[Check] = [
    dependencies,
    heartbeats,
    api_errors,
    delivery_failures,
    dead_letters_growing,
    queue_wait,
    delayed_jobs_overdue,
]


def evaluate(f: Facts) -> list[Condition]:
    return [condition for check in CHECKS for condition in check(f)]

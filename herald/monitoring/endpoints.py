"""Telemetry over HTTP: stage timelines and the JSON summary (admin token), and `/metrics`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Field

from herald.apikeys.deps import AdminDep
from herald.core.db import ping
from herald.core.errors import NotFound
from herald.core.schemas import CamelModel
from herald.delivery.deps import QueuesDep
from herald.monitoring import conditions
from herald.monitoring.service import Monitoring
from herald.notifications.models import MODEL_OF, Channel
from herald.realtime.endpoints import PresenceDep
from herald.realtime.presence import Presence
from herald.telemetry.service import Telemetry
from herald.web.deps import DbDep, EngineDep, RedisDep, SettingsDep, app_state
from herald.web.errors import errors

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from sqlalchemy.ext.asyncio import AsyncEngine


router = APIRouter(
    prefix="/api/ops", tags=["telemetry"], dependencies=[AdminDep], responses=errors(404)
)
metrics_router = APIRouter()
TelemetryDep = Annotated[Telemetry, app_state("telemetry")]
MonitoringDep = Annotated[Monitoring, app_state("monitoring")]

CHECK = 2.0  # seconds a dependency has to answer
TelemetryId = Annotated[str, Path(alias="telemetryId", pattern=r"^[A-Za-z0-9._:\-]{1,128}$")]


class StageOut(CamelModel):
    telemetry_id: str
    stage: str = Field(description="load_balancer, server, database, queue, worker, channel, ack")
    timestamp: float = Field(description="epoch milliseconds")
    at: datetime
    offset_ms: float = Field(description="milliseconds since the timeline's first stage")
    component: str
    server_id: str
    channel: str | None
    notification_id: int | None
    detail: dict[str, Any]


class TimelineOut(CamelModel):
    telemetry_id: str
    started_at: datetime
    duration_ms: float = Field(description="from the first stage to the last")
    stages: list[StageOut]


class ComponentSummary(CamelModel):
    count: int
    errors: int
    per_second: float
    success_rate: float | None
    error_rate: float | None
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class MetricsSummary(CamelModel):
    generated_at: datetime
    window_seconds: float
    components: dict[str, ComponentSummary] = Field(
        description="api, sockets, queue:<name> per queue and tier, channel:<email|inapp>"
    )
    processes: list[dict[str, Any]]
    queues: dict[str, dict[str, int]]
    queue_depth: dict[str, int]
    connections: dict[str, Any]
    escalations: dict[str, Any] = Field(
        description="perMinute: escalations between tiers; tiers: per retry tier and DLQ, "
        "inflow per minute and jobs in it now"
    )
    connection_rates: dict[str, Any] = Field(
        description="connects, disconnects and reconnections per minute: cluster and per server"
    )
    queue_wait: dict[str, dict[str, Any]] = Field(
        description="per queue: how long jobs waited for a worker (p50/p95/p99 ms)"
    )


class AlertOut(CamelModel):
    alert: str = Field(description="the matching rule in deploy/prometheus/alerts.yml")
    severity: str = Field(description="critical (something is down) or warning")
    message: str


class AlertsOut(CamelModel):
    checked_at: datetime
    alerts: list[AlertOut]


def _timeline(telemetry_id: str, events: list[dict[str, Any]]) -> TimelineOut:
    first = events[0]["timestamp"]
    return TimelineOut(
        telemetry_id=telemetry_id,
        started_at=datetime.fromtimestamp(first / 1000, UTC),
        duration_ms=round(events[-1]["timestamp"] - first, 3),
        stages=[
            StageOut(
                **e,
                at=datetime.fromtimestamp(e["timestamp"] / 1000, UTC),
                offset_ms=round(e["timestamp"] - first, 3),
            )
            for e in events
        ],
    )


@router.get("/telemetry/notification/{channel}/{notificationId}")
async def notification_timeline(
    channel: Channel,
    notification_id: Annotated[int, Path(alias="notificationId", ge=1, le=2**31 - 1)],
    db: DbDep,
    telemetry: TelemetryDep,
) -> TimelineOut:
    """One notification's stages, with those of the request that made it."""
    async with db() as session:
        n = await session.get(MODEL_OF[channel], notification_id)
    if n is None:
        raise NotFound(f"no {channel.value} notification {notification_id}")
    events = await telemetry.stages.timeline(n.telemetry_id) if n.telemetry_id else []
    mine = [
        e
        for e in events
        if e["notificationId"] is None
        or (e["channel"] == channel.value and e["notificationId"] == notification_id)
    ]
    if not mine:
        raise NotFound(
            f"no timeline for {channel.value} notification {notification_id} (expired or not kept)",
            code="timeline_not_found",
        )
    return _timeline(str(n.telemetry_id), mine)


@router.get("/telemetry/{telemetryId}")
async def request_timeline(telemetry_id: TelemetryId, telemetry: TelemetryDep) -> TimelineOut:
    """Every stage of one request (the `X-Request-ID` of its answer) and of the notifications
    it made, oldest first. Kept for `HERALD_TELEMETRY_TTL` seconds."""
    events = await telemetry.stages.timeline(telemetry_id)
    if not events:
        raise NotFound(
            f"no timeline for {telemetry_id} (expired or not kept)", code="timeline_not_found"
        )
    return _timeline(telemetry_id, events)


@router.get("/metrics")
async def metrics_summary(monitoring: MonitoringDep) -> MetricsSummary:
    """The last minute across every live process: per component requests/s, p50/p95/p99,
    success and error rates; queue depth per queue and tier; connections per server."""
    summary = await monitoring.aggregator.summary(time.time())
    return MetricsSummary.model_validate(summary)


@router.get("/alerts")
async def current_alerts(
    settings: SettingsDep, engine: EngineDep, redis: RedisDep, queues: QueuesDep
) -> AlertsOut:
    """What needs a person now (the dashboard's banner): the conditions the Prometheus rules in
    deploy/prometheus/alerts.yml watch, read from the cluster's last minute."""
    database_up = await _answers(ping(engine))
    try:
        facts = await asyncio.wait_for(
            conditions.observe(settings, redis, queues, database_up=database_up),
            2 * CHECK,
        )
    except Exception:  # Redis stopped answering half-way: that is the alert
        facts = conditions.Facts(redis_up=False, database_up=database_up)
    found = conditions.evaluate(facts)
    return AlertsOut(checked_at=datetime.now(UTC), alerts=[AlertOut(**c.to_json()) for c in found])


async def _answers(probe: Awaitable[Any]) -> bool:
    try:
        await asyncio.wait_for(probe, CHECK)
    except Exception:
        return False
    return True


async def _dependencies(engine: AsyncEngine, redis: aioredis.Redis) -> tuple[bool, bool]:
    """(database up, Redis up)."""
    return await asyncio.gather(_answers(ping(engine)), _answers(redis.ping()))


async def _heartbeats(presence: Presence) -> dict[str, bool]:
    announced = await asyncio.wait_for(presence.announced(), CHECK)
    return {server: bool(info["alive"]) for server, info in announced.items()}


@metrics_router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(
    telemetry: TelemetryDep,
    engine: EngineDep,
    redis: RedisDep,
    queues: QueuesDep,
    presence: PresenceDep,
) -> Response:
    """This process's metrics in Prometheus's text format; the gauges of the cluster's state
    (queues, presence heartbeats, Redis and the database) read fresh."""
    metrics = telemetry.metrics
    database_up, redis_up = await _dependencies(engine, redis)
    metrics.set_dependencies({"database": database_up, "redis": redis_up})
    with contextlib.suppress(Exception):  # Redis away: the gauges keep their last values
        metrics.set_queue_counts(await asyncio.wait_for(queues.counts(), CHECK))
        beats = await _heartbeats(presence)
        alive = sum(beats.values())
        metrics.set_presence(alive=alive, missing=len(beats) - alive)
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

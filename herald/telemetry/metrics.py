"""Metrics per component, for Prometheus and for the rolling window.

Each Herald keeps its own `CollectorRegistry` (not prometheus_client's global one), so several
Herald apps in one process, as in the tests, never collide. Every observation goes to both a
Prometheus metric and the window (`window.Window`), which the JSON summary and the live view
read. Components in the window: `api`, `sockets`, `queue:<name>` per queue (each tier is its own
queue) and `channel:<email|inapp>`; and, counted for the monitoring sections of the summary rather
than as components, `wait:<queue>` (time a job waited), `escalation:<from>><to>` (a notification
moved up the ladder) and `connection:<connect|disconnect|reconnect>` (Socket.IO connections).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from herald.telemetry.window import Window

# Seconds. Fine at the bottom: an API answer takes around a millisecond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# A job may wait minutes for a worker: the queue-wait alert (30 s) needs buckets above it.
WAIT_BUCKETS = (*LATENCY_BUCKETS, 60.0, 120.0, 300.0, 600.0)
# Job outcomes that count as errors of their queue (the attempt did not deliver).
FAILED_OUTCOMES = frozenset({"retry", "escalated", "dead-lettered"})
# Window components that are not components of their own but feed the monitoring sections.
WAIT, ESCALATION, CONNECTION = "wait:", "escalation:", "connection:"
MONITORING_PREFIXES = (WAIT, ESCALATION, CONNECTION)
# Where an attempt's outcome sends a notification: (queue, outcome) -> (channel, next queue).
Routes = dict[tuple[str, str], tuple[str, str]]


class Metrics:
    def __init__(self, routes: Routes | None = None) -> None:
        self.routes = routes or {}
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.window = Window()
        r = self.registry
        self.http_requests = Counter(
            "herald_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "herald_http_request_duration_seconds",
            "Time from request to the end of its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "herald_jobs",
            "Delivery attempts run by workers, by queue (tier) and outcome",
            ["queue", "outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "herald_job_duration_seconds",
            "Time a worker spent on one attempt",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.job_wait = Histogram(
            "herald_job_wait_seconds",
            "Time a job waited in its queue before its first attempt",
            ["queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "herald_channel_deliveries",
            "Channel sends (SMTP conversations, socket emits)",
            ["channel", "outcome"],
            registry=r,
        )
        self.send_duration = Histogram(
            "herald_channel_send_duration_seconds",
            "Time one channel send took",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.socket_events = Counter(
            "herald_socket_events", "Socket.IO events handled", ["event", "outcome"], registry=r
        )
        self.socket_event_duration = Histogram(
            "herald_socket_event_duration_seconds",
            "Time a Socket.IO handler took",
            ["event"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.socket_connections = Gauge(
            "herald_socket_connections", "Socket.IO connections open on this server", registry=r
        )
        self.queue_jobs = Gauge(
            "herald_queue_jobs",
            "Jobs per queue and state (the whole cluster, read from Redis)",
            ["queue", "state"],
            registry=r,
        )
        self.escalations = Counter(
            "herald_escalations",
            "Notifications moved to the next tier or the dead-letter queue",
            ["channel", "from_queue", "to_queue"],
            registry=r,
        )
        self.connection_events = Counter(
            "herald_socket_connection_events",
            "Socket.IO connects, disconnects, and reconnections (an authenticated user connecting "
            "again soon after a disconnect)",
            ["kind"],
            registry=r,
        )
        self.presence_servers = Gauge(
            "herald_presence_servers",
            "API servers by presence heartbeat: alive, or missing (announced, heartbeat lapsed)",
            ["state"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "herald_dependency_up",
            "1 when this server reaches the dependency, else 0",
            ["dependency"],
            registry=r,
        )
        self.skipped = Counter(
            "herald_notifications_skipped",
            "Notifications not sent because the recipient's preferences turned them off, by "
            "channel and the switch that decided (type_channel, type, channel, address)",
            ["channel", "reason"],
            registry=r,
        )
        self.stage_events = Counter(
            "herald_telemetry_stage_events", "Stage events by result", ["result"], registry=r
        )

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus_client's `labels` takes a lock and
        validates on every call, and the API asks for the same few children all the time."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_duration, route).observe(seconds)
        self.window.observe("api", seconds * 1000, status < 500)

    def observe_job(self, queue: str, outcome: str, seconds: float, wait: float | None) -> None:
        self.jobs.labels(queue, outcome).inc()
        self.job_duration.labels(queue).observe(seconds)
        if wait is not None:
            self.job_wait.labels(queue).observe(max(wait, 0.0))
            self.window.observe(WAIT + queue, max(wait, 0.0) * 1000)
        self.window.observe(f"queue:{queue}", seconds * 1000, outcome not in FAILED_OUTCOMES)
        route = self.routes.get((queue, outcome))
        if route is not None:
            channel, to_queue = route
            self._child(self.escalations, channel, queue, to_queue).inc()
            self.window.observe(f"{ESCALATION}{queue}>{to_queue}", 0.0)

    def observe_connection(self, kind: str) -> None:
        """`connect`, `disconnect` or `reconnect`."""
        self._child(self.connection_events, kind).inc()
        self.window.observe(CONNECTION + kind, 0.0)

    def observe_send(self, channel: str, ok: bool, seconds: float) -> None:
        self.deliveries.labels(channel, "delivered" if ok else "failed").inc()
        self.send_duration.labels(channel).observe(seconds)
        self.window.observe(f"channel:{channel}", seconds * 1000, ok)

    def observe_skipped(self, channel: str, reason: str) -> None:
        self._child(self.skipped, channel, reason).inc()

    def observe_socket_event(self, event: str, ok: bool, seconds: float) -> None:
        self.socket_events.labels(event, "ok" if ok else "error").inc()
        self.socket_event_duration.labels(event).observe(seconds)
        self.window.observe("sockets", seconds * 1000, ok)

    def stages_written(self, written: int, dropped: int) -> None:
        if written:
            self.stage_events.labels("written").inc(written)
        if dropped:
            self.stage_events.labels("dropped").inc(dropped)

    def count_connections(self, count: Callable[[], int]) -> None:
        """Read the number of open sockets whenever Prometheus scrapes."""
        self.socket_connections.set_function(count)

    def set_queue_counts(self, counts: dict[str, dict[str, int]]) -> None:
        for queue, states in counts.items():
            for state, n in states.items():
                self.queue_jobs.labels(queue, state).set(n)

    def set_presence(self, alive: int, missing: int) -> None:
        self.presence_servers.labels("alive").set(alive)
        self.presence_servers.labels("missing").set(missing)

    def set_dependencies(self, up: dict[str, bool]) -> None:
        for dependency, ok in up.items():
            self.dependency_up.labels(dependency).set(1 if ok else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

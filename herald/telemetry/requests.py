"""What telemetry keeps of one HTTP request: its metrics, and its first stages.

Called by the RequestContext middleware once the answer has been sent, so none of it delays
the client. Every request is counted (per route template, so ids in paths do not multiply the
series); API requests also leave a `server` stage, preceded by a `load_balancer` stage when
HAProxy forwarded them. Health checks and operations calls leave none: HAProxy polls health
every two seconds, and the dashboard reading a timeline should not write one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import Scope

from herald.telemetry.stages import StageEvent

if TYPE_CHECKING:
    from herald.telemetry.service import Telemetry

NO_TIMELINE = ("/api/ops/", "/api/health")


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def lb_timestamp(value: bytes | None) -> float | None:
    """`X-Request-Start: t=<time>` (seconds, milliseconds or microseconds since the epoch, as
    HAProxy or nginx put it) in epoch milliseconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        t = float(value.decode("latin-1").strip().removeprefix("t="))
    except ValueError:
        return None
    if t < 1e11:
        return t * 1000
    return t if t < 1e14 else t / 1000


def record_request(
    telemetry: Telemetry, scope: Scope, request_id: str, arrived: float, seconds: float, status: int
) -> None:
    """One finished request (herald.web.middleware.RequestObserver): `arrived` in epoch
    seconds, `seconds` its time in the app, `status` what the client got."""
    arrived_ms = round(arrived * 1000, 3)
    route = route_of(scope)
    telemetry.metrics.observe_request(scope["method"], route, status, seconds)
    path: str = scope["path"]
    if not path.startswith("/api/") or path.startswith(NO_TIMELINE):
        return
    headers = dict(scope["headers"])
    events = []
    forwarded_for = headers.get(b"x-forwarded-for")
    if forwarded_for or b"x-herald-lb" in headers:
        started = lb_timestamp(headers.get(b"x-request-start"))
        events.append(
            StageEvent(
                request_id,
                "load_balancer",
                "load_balancer",
                telemetry.server_id,
                timestamp=round(started or arrived_ms, 3),
                detail={
                    "forwardedFor": (forwarded_for or b"").decode("latin-1"),
                    "forwardedHost": headers.get(b"x-forwarded-host", b"").decode("latin-1"),
                    "measured": started is not None,
                },
            )
        )
    detail = {
        "method": scope["method"],
        "route": route,
        "status": status,
        "durationMs": round(seconds * 1000, 3),
    }
    # Which API key made the request (set by the scope check in herald.apikeys.deps); the admin
    # token leaves "admin", a session or client token nothing.
    if (by := scope.get("state", {}).get("credential")) is not None:
        detail["apiKey"] = by
    events.append(
        StageEvent(
            request_id,
            "server",
            "api",
            telemetry.server_id,
            timestamp=arrived_ms,
            detail=detail,
        )
    )
    telemetry.stages.emit(*events)

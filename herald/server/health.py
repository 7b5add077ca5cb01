from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import socketio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from herald import __version__
from herald.channels.mailbox import CaptureMailbox
from herald.core.db import ping
from herald.delivery.deps import QueuesDep
from herald.realtime.adapter.server import socket_count
from herald.realtime.endpoints import PresenceDep
from herald.web.deps import EngineDep, RedisDep, SettingsDep, app_state

router = APIRouter(prefix="/api", tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "down"]
    serverId: str
    version: str
    uptimeSeconds: float
    roles: dict[str, bool]
    database: dict[str, Any] = Field(description="status, latencyMs or error, dialect")
    redis: dict[str, Any] = Field(description="status, latencyMs or error, embedded")
    queues: dict[str, Any] = Field(description="job counts per queue and state")
    sockets: dict[str, int]
    email: dict[str, str]


STARTED = time.monotonic()
CHECK_TIMEOUT = 2.0


async def _check(probe: Any) -> dict[str, Any]:
    begun = time.perf_counter()
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latencyMs": round((time.perf_counter() - begun) * 1000, 2)}


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database does not answer"}},
)
async def health(
    engine: EngineDep,
    redis_client: RedisDep,
    queue_set: QueuesDep,
    presence: PresenceDep,
    settings: SettingsDep,
    sio: Annotated[socketio.AsyncServer | None, app_state("sio")],
    mailbox: Annotated[CaptureMailbox | None, app_state("mailbox")],
    workers: Annotated[bool, app_state("run_workers")],
) -> JSONResponse:
    """Up (200) while this server can take requests: the database answers. Without Redis it
    still stores notifications (they are queued once Redis is back), so it reports `degraded`."""
    database, redis = await asyncio.gather(_check(ping(engine)), _check(redis_client.ping()))
    queues: dict[str, Any] = {}
    if redis["status"] == "up":
        try:
            queues = await asyncio.wait_for(queue_set.counts(), CHECK_TIMEOUT)
        except Exception as exc:
            queues = {"error": type(exc).__name__}
    online: dict[str, Any] = {}
    if redis["status"] == "up":
        servers = await presence.servers()
        online = {
            "servers": sum(s.alive for s in servers),
            "onlineSockets": sum(s.sockets for s in servers if s.alive),
            "onlineUsers": len(await presence.online_users()),
        }
    if database["status"] != "up":
        status, code = "down", 503
    else:
        status, code = ("ok", 200) if redis["status"] == "up" else ("degraded", 200)
    body = {
        "status": status,
        "serverId": settings.effective_server_id,
        "version": __version__,
        "uptimeSeconds": round(time.monotonic() - STARTED, 1),
        "roles": {"api": sio is not None, "workers": workers},
        "database": {**database, "dialect": engine.dialect.name},
        "redis": {**redis, "embedded": settings.configured_redis_url is None},
        "queues": queues,
        "sockets": {"connected": socket_count(sio) if sio else 0, **online},
        "email": {"mode": "capture" if mailbox else "smtp"},
    }
    return JSONResponse(body, code)

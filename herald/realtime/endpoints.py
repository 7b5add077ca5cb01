"""Live connections: what a client needs to connect (public), and, with the admin token, who is
online where and broadcasts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from herald.apikeys.deps import AdminDep
from herald.core.db import utcnow
from herald.core.schemas import CamelInput, CamelModel, OneLine
from herald.realtime.presence import AUTHENTICATED_ROOM, Presence
from herald.web.deps import SettingsDep, SocketServerDep, app_state

router = APIRouter(prefix="/api/ops", tags=["operations"], dependencies=[AdminDep])
client_router = APIRouter(prefix="/api", tags=["realtime"])
PresenceDep = Annotated[Presence, app_state("presence")]


class ClientConfig(CamelModel):
    ws_max_reconnect_attempts: int = Field(
        description="WS_MAX_RECONNECT_ATTEMPTS: reconnection attempts before a client gives up "
        "and offers a retry (0: never give up)"
    )
    ws_heartbeat_interval: int = Field(description="WS_HEARTBEAT_INTERVAL: ping interval (ms)")


@client_router.get("/client-config")
async def client_config(s: SettingsDep) -> ClientConfig:
    """The Socket.IO settings a client should follow; no token needed."""
    return ClientConfig(
        ws_max_reconnect_attempts=s.ws_max_reconnect_attempts,
        ws_heartbeat_interval=s.ws_heartbeat_interval,
    )


class BroadcastIn(CamelInput):
    title: OneLine = Field(min_length=1, max_length=255)
    message: str = Field(min_length=1, max_length=5000)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    data: dict[str, Any] = Field(default_factory=dict)


class BroadcastOut(CamelModel):
    broadcast_id: str
    sent_at: datetime
    online_sockets: int


class ServerOut(CamelModel):
    server_id: str
    alive: bool
    sockets: int
    users: int


class ConnectionsOut(CamelModel):
    servers: list[ServerOut]
    online_users: int
    sockets: int
    users: list[dict[str, Any]]


@router.post("/broadcast", response_model=BroadcastOut)
async def broadcast(body: BroadcastIn, sio: SocketServerDep, presence: PresenceDep) -> BroadcastOut:
    """Send `notification:broadcast` to every authenticated socket on every server."""
    sent = BroadcastOut(broadcast_id=uuid.uuid4().hex, sent_at=utcnow(), online_sockets=0)
    payload = {
        "id": sent.broadcast_id,
        **body.model_dump(by_alias=True),
        "sentAt": sent.sent_at.isoformat(),
    }
    await sio.emit("notification:broadcast", payload, room=AUTHENTICATED_ROOM)
    sent.online_sockets = sum(s.sockets for s in await presence.servers() if s.alive)
    return sent


@router.get("/connections", response_model=ConnectionsOut)
async def connections(
    presence: PresenceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> ConnectionsOut:
    """Live servers with their socket counts, and who is online where (first `limit` users)."""
    servers = await presence.servers()
    online = await presence.online_users()
    users = [
        {"userId": user_id, "sockets": [{"sid": sid, "serverId": s} for sid, s in sockets]}
        for user_id, sockets in sorted(online.items())[:limit]
    ]
    return ConnectionsOut(
        servers=[ServerOut.model_validate(s) for s in servers],
        online_users=len(online),
        sockets=sum(len(s) for s in online.values()),
        users=users,
    )

"""The Socket.IO server: authentication, rooms, presence and heartbeat.

Every API server shares one Redis-backed manager, so an emit to a user's room from any process
(an API server or a worker) reaches that user's sockets wherever they are connected.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import socketio

from herald.accounts.service import user_for_token
from herald.realtime.presence import user_room

if TYPE_CHECKING:
    from herald.runtime import Herald

log = logging.getLogger(__name__)

SOCKETIO_CHANNEL = "herald-socketio"


def redis_manager(redis_url: str, *, write_only: bool = False) -> socketio.AsyncRedisManager:
    return socketio.AsyncRedisManager(redis_url, channel=SOCKETIO_CHANNEL, write_only=write_only)


def create_socket_server(herald: Herald) -> socketio.AsyncServer:
    settings = herald.settings
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=redis_manager(herald.redis_url),
        cors_allowed_origins=settings.cors_origins,
        ping_interval=settings.ws_heartbeat_interval / 1000,
        ping_timeout=max(settings.ws_heartbeat_interval / 1000, 20),
    )

    async def authenticate(sid: str, token: Any) -> None:
        if isinstance(token, dict):
            token = token.get("token")
        user = None
        if isinstance(token, str):
            async with herald.db() as session:
                user = await user_for_token(session, token)
        if user is None:
            await sio.emit("auth:error", {"message": "invalid or expired session token"}, to=sid)
            return
        await sio.save_session(sid, {"userId": user.id, "username": user.username})
        await sio.enter_room(sid, user_room(user.id))
        await herald.presence.add(user.id, sid)
        await sio.emit(
            "auth:success",
            {
                "userId": user.id,
                "username": user.username,
                "socketId": sid,
                "serverId": settings.effective_server_id,
            },
            to=sid,
        )
        log.info("realtime.authenticated", extra={"userId": user.id, "sid": sid})

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if auth:  # the connect payload may carry the token: {"token": "..."}
            await authenticate(sid, auth)

    @sio.on("authenticate")
    async def on_authenticate(sid: str, data: Any = None) -> None:
        await authenticate(sid, data)

    @sio.event
    async def ping(sid: str, data: Any = None) -> None:
        await sio.emit(
            "pong",
            {"timestamp": int(time.time() * 1000), "serverId": settings.effective_server_id},
            to=sid,
        )

    @sio.event
    async def disconnect(sid: str, *_: Any) -> None:
        session = await sio.get_session(sid)
        if session.get("userId"):
            await herald.presence.remove(session["userId"], sid)

    return sio

"""The Socket.IO server: authentication, catch-up, acknowledgements, read state, heartbeat.

Every API server shares one Redis-backed manager, so an emit to a user's room or socket from any
process (an API server or a worker) reaches it wherever it is connected. A socket receives
nothing until it authenticates: it joins no room before that.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import socketio

from herald.accounts.models import User
from herald.accounts.service import user_for_token
from herald.notifications import inbox
from herald.notifications.models import InAppNotification
from herald.notifications.schemas import inapp_event
from herald.realtime.presence import AUTHENTICATED_ROOM, user_room
from herald.realtime.pubsub import PromptRedisManager

if TYPE_CHECKING:
    from herald.runtime import Herald

log = logging.getLogger(__name__)

SOCKETIO_CHANNEL = "herald-socketio"
NOT_AUTHENTICATED = {"message": "authenticate first"}


def redis_manager(redis_url: str, *, write_only: bool = False) -> socketio.AsyncRedisManager:
    # Pub/sub channels are server-wide in Redis, not per database: name the channel after the
    # database so two installations sharing one Redis server never hear each other.
    database = urlparse(redis_url).path.strip("/") or "0"
    return PromptRedisManager(
        redis_url, channel=f"{SOCKETIO_CHANNEL}:{database}", write_only=write_only
    )


class Refused(Exception):
    """A socket request that cannot be served; its message goes back to the client."""


def parse_ids(data: Any) -> list[int] | None:
    """`5`, `[5, 6]`, `{"id": 5}`, `{"ids": [5, 6]}` -> ids; `"all"`/`{"all": true}` -> None."""
    if data == "all" or (isinstance(data, dict) and data.get("all") is True):
        return None
    if isinstance(data, dict):
        data = data.get("ids", data.get("id"))
    values = data if isinstance(data, list) else [data]
    ids = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if not ids or len(ids) != len(values):
        raise ValueError("give an id, a list of ids, or all")
    return ids


def accepted_origin(configured: list[str]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Origins in CORS_ORIGIN, and Herald's own: the pages it serves at `/` and `/dashboard`
    connect from the origin they were loaded from (behind HAProxy, the forwarded one)."""

    def accepted(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin in configured:
            return True
        host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
        scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "http")
        return bool(host) and origin == f"{scheme.split(',')[0].strip()}://{host.split(',')[0]}"

    return accepted


def create_socket_server(herald: Herald) -> socketio.AsyncServer:
    settings = herald.settings
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=redis_manager(herald.redis_url),
        cors_allowed_origins=accepted_origin(settings.cors_origins),
        ping_interval=settings.ws_heartbeat_interval / 1000,
        ping_timeout=max(settings.ws_heartbeat_interval / 1000, 20),
    )

    async def user_of(sid: str) -> int | None:
        session = await sio.get_session(sid)
        return session.get("userId") if session else None

    async def sign_in(sid: str, user: User) -> list[InAppNotification]:
        """Join the user's rooms and presence; returns the backlog this socket must be sent.

        The backlog is claimed for this connection *before* the socket shows up in presence, so
        no worker can push one of its notifications ahead of the older ones: they arrive in
        order. One created in between finds the user offline and comes on its next attempt."""
        previous = await user_of(sid)
        if previous is not None and previous != user.id:  # the socket changes hands
            await sio.leave_room(sid, user_room(previous))
            await herald.presence.remove(previous, sid)
        await sio.save_session(sid, {"userId": user.id, "username": user.username})
        await sio.enter_room(sid, user_room(user.id))
        await sio.enter_room(sid, AUTHENTICATED_ROOM)
        async with herald.db() as session:
            backlog = await inbox.unacknowledged(session, user.id)
        fresh = set(await herald.presence.claim(sid, [n.id for n in backlog]))
        await herald.presence.add(user.id, sid)
        return [n for n in backlog if n.id in fresh]

    async def catch_up(sid: str, backlog: list[InAppNotification]) -> None:
        for n in backlog:
            await sio.emit("notification:new", inapp_event(n), to=sid)
            await inbox.record_catch_up(herald, n, sid)

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
        backlog = await sign_in(sid, user)
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
        await catch_up(sid, backlog)
        log.info(
            "realtime.authenticated",
            extra={"userId": user.id, "sid": sid, "caughtUp": len(backlog)},
        )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if auth:  # the connect payload may carry the token: {"token": "..."}
            await authenticate(sid, auth)

    @sio.on("authenticate")
    async def on_authenticate(sid: str, data: Any = None) -> None:
        await authenticate(sid, data)

    async def signed_in_ids(sid: str, data: Any) -> tuple[int, list[int] | None]:
        """The socket's user and the ids an ack or read names; Refused otherwise."""
        user_id = await user_of(sid)
        if user_id is None:
            await sio.emit("auth:error", NOT_AUTHENTICATED, to=sid)
            raise Refused(NOT_AUTHENTICATED["message"])
        try:
            return user_id, parse_ids(data)
        except ValueError as exc:
            raise Refused(str(exc)) from None

    @sio.on("notification:ack")
    async def on_ack(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            user_id, ids = await signed_in_ids(sid, data)
            if ids is None:
                raise Refused("acknowledge ids, not all")
        except Refused as refused:
            return {"error": str(refused)}
        return {"acked": await inbox.acknowledge(herald, user_id, ids, sid)}

    @sio.on("notification:markRead")
    async def on_mark_read(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            user_id, ids = await signed_in_ids(sid, data)
        except Refused as refused:
            return {"error": str(refused)}
        marked = await inbox.mark_read(herald, user_id, ids)
        await announce_read(herald, user_id, marked, everything=ids is None)
        return {"marked": marked}

    @sio.event
    async def ping(sid: str, data: Any = None) -> None:
        await sio.emit(
            "pong",
            {"timestamp": int(time.time() * 1000), "serverId": settings.effective_server_id},
            to=sid,
        )

    @sio.event
    async def disconnect(sid: str, *_: Any) -> None:
        user_id = await user_of(sid)
        if user_id is not None:
            await herald.presence.remove(user_id, sid)

    return sio


async def announce_read(herald: Herald, user_id: int, ids: list[int], *, everything: bool) -> None:
    """Tell every tab of the user what was marked read, wherever it is connected."""
    assert herald.sio is not None
    async with herald.db() as session:
        unread = await inbox.unread_count(session, user_id)
    await herald.sio.emit(
        "notifications:markedRead",
        {"ids": ids, "all": everything, "unreadCount": unread},
        room=user_room(user_id),
    )

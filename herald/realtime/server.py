"""The Socket.IO server: authentication, catch-up, acknowledgements, read state, heartbeat.

Every API server shares one Redis-backed manager, so an emit to a user's room or socket from any
process (an API server or a worker) reaches it wherever it is connected. A socket receives
nothing until it authenticates: it joins no room before that.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import socketio

from herald.accounts.service import login_for_token
from herald.core.db import utcnow
from herald.core.deadlines import Deadlines
from herald.core.redis import pubsub_channel
from herald.notifications import inbox
from herald.notifications.models import InAppNotification
from herald.notifications.schemas import inapp_event
from herald.realtime import engineio_lean, sessions
from herald.realtime.presence import AUTHENTICATED_ROOM, user_room
from herald.realtime.pubsub import PromptRedisManager
from herald.subscribers import service as subscribers
from herald.subscribers import tokens

if TYPE_CHECKING:
    from herald.runtime import Herald

log = logging.getLogger(__name__)

SOCKETIO_CHANNEL = "herald-socketio"
NOT_AUTHENTICATED = {"message": "authenticate first"}
SESSION_ENDED = {"message": "your session has ended: log in again"}
MAX_ID = 2**63 - 1
MAX_IDS = 1000
MAX_TOKEN_LENGTH = 4096  # a client token (JWT) may carry claims of the application's own


def redis_manager(redis_url: str, *, write_only: bool = False) -> socketio.AsyncRedisManager:
    return PromptRedisManager(
        redis_url, channel=pubsub_channel(SOCKETIO_CHANNEL, redis_url), write_only=write_only
    )


class Signer(NamedTuple):
    """Who a socket signs in as."""

    id: int
    username: str | None
    external_id: str | None


class Refused(Exception):
    """A socket request that cannot be served; its message goes back to the client."""


def parse_ids(data: Any) -> list[int] | None:
    """`5`, `[5, 6]`, `{"id": 5}`, `{"ids": [5, 6]}` -> ids; `"all"`/`{"all": true}` -> None.

    Ids are database integers: anything outside 1..2**63-1 (which the database driver would
    refuse with an OverflowError) or more than MAX_IDS of them is refused here."""
    if data == "all" or (isinstance(data, dict) and data.get("all") is True):
        return None
    if isinstance(data, dict):
        data = data.get("ids", data.get("id"))
    values = data if isinstance(data, list) else [data]
    ids = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_ID]
    if not ids or len(ids) != len(values):
        raise ValueError(f"give an id (1 to {MAX_ID}), a list of ids, or all")
    if len(ids) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} ids at once")
    return ids


Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]


def answers_errors(handler: Handler) -> Handler:
    """An event whose handler fails still gets an answer: the client's callback is never left
    waiting, and the failure is logged here rather than lost in python-socketio's task."""

    @functools.wraps(handler)
    async def guarded(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            return await handler(sid, data)
        except Exception:
            log.exception("realtime.event.failed", extra={"sid": sid})
            return {"error": "the server could not handle this event"}

    return guarded


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
    engineio_lean.install()  # three tasks less per idle socket (see the module)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=redis_manager(herald.redis_url),
        cors_allowed_origins=accepted_origin(settings.cors_origins),
        ping_interval=settings.ws_heartbeat_interval / 1000,
        ping_timeout=max(settings.ws_heartbeat_interval / 1000, 20),
    )

    # Each socket is disconnected when its session expires (revocations disconnect it at once),
    # on one timer for all of them.
    expiries: Deadlines[str] = Deadlines(lambda sid: sio.start_background_task(sio.disconnect, sid))

    async def reply(sid: str, event: str, data: Any) -> None:
        """Emit to a socket of this server, from one of its handlers. Not through Redis: the
        manager's emit also publishes every message for the other servers, who have no such
        socket; that was a PUBLISH per sign-in and per caught-up notification, and every other
        API server's subscriber reading it for nothing."""
        await sio.emit(event, data, to=sid, ignore_queue=True)

    def expire_at(sid: str, expires_at: datetime) -> None:
        expiries.set(sid, (expires_at - utcnow()).total_seconds())

    async def sign_in(
        sid: str, user: Signer, login_id: int | None, expires_at: datetime
    ) -> list[InAppNotification] | None:
        """Join the user's rooms and presence; returns the backlog this socket must be sent.
        `login_id` is the session a session token opened, good until `expires_at`; None for a
        client token (a JWT the application signed), which is bound to no session.

        The backlog is claimed for this connection *before* the socket shows up in presence, so
        no worker can push one of its notifications ahead of the older ones: they arrive in
        order. One created in between finds the user offline and comes on its next attempt.

        None if the session ended while the socket was being bound to it."""
        previous = await sio.get_session(sid)
        if previous.get("userId") not in (None, user.id):  # the socket changes hands
            await sio.leave_room(sid, user_room(previous["userId"]))
            await herald.presence.remove(previous["userId"], sid)
        if previous.get("sessionId") not in (None, login_id):
            await sessions.unbind(herald.redis, previous["sessionId"], sid)
        if login_id is not None:
            await sessions.bind(herald.redis, login_id, sid, expires_at)
        # Checked again once bound (a logout that committed meanwhile found no socket), in the
        # backlog's own statement: None if the session ended.
        backlog = await inbox.backlog_if_live(herald.db, user.id, login_id)
        if backlog is None:
            return None
        await sio.save_session(
            sid,
            {
                "userId": user.id, "username": user.username, "sessionId": login_id,
                "expiresAt": expires_at.timestamp(),
            },
        )  # fmt: skip
        expire_at(sid, expires_at)
        await sio.enter_room(sid, user_room(user.id))
        await sio.enter_room(sid, AUTHENTICATED_ROOM)
        fresh = set(await herald.presence.claim(sid, [n.id for n in backlog]))
        if await herald.presence.add(user.id, sid) and previous.get("userId") != user.id:
            herald.telemetry.metrics.observe_connection("reconnect")
        return [n for n in backlog if n.id in fresh]

    async def catch_up(sid: str, backlog: list[InAppNotification]) -> None:
        for n in backlog:
            await reply(sid, "notification:new", inapp_event(n))
            await herald.inbox.record_catch_up(n, sid)

    async def identify(token: str) -> tuple[Signer, int | None, datetime]:
        """Who a token is: a client token (a JWT the application signed) or a session token;
        Refused, saying why, for anything else."""
        if tokens.looks_like_jwt(token):
            secret = settings.client_token_secret
            try:
                claims = tokens.verify(token, secret.get_secret_value() if secret else None)
            except tokens.TokenRefused as refused:
                raise Refused(str(refused)) from None
            user = await subscribers.ensure(herald.db, claims.subscriber_id)
            return Signer(user.id, user.username, user.external_id), None, claims.expires_at
        found = await login_for_token(herald.db, token)
        if found is None:
            raise Refused("invalid or expired session token")
        signer = Signer(found.user_id, found.username, found.external_id)
        return signer, found.session_id, found.expires_at

    async def authenticate(sid: str, token: Any) -> None:
        if isinstance(token, dict):
            token = token.get("token")
        try:
            if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
                raise Refused("invalid or expired session token")
            user, login_id, expires_at = await identify(token)
            backlog = await sign_in(sid, user, login_id, expires_at)
            if backlog is None:
                raise Refused("invalid or expired session token")
        except Refused as refused:
            await reply(sid, "auth:error", {"message": str(refused)})
            return
        await reply(
            sid,
            "auth:success",
            {
                "userId": user.id,
                "subscriberId": user.external_id,
                "username": user.username,
                "socketId": sid,
                "serverId": settings.effective_server_id,
            },
        )
        await catch_up(sid, backlog)
        log.info(
            "realtime.authenticated",
            extra={"userId": user.id, "sid": sid, "caughtUp": len(backlog)},
        )

    # Sockets that sent their token with the connect, until the connection is confirmed:
    # Socket.IO confirms it only after the connect handler returns, and anything emitted before
    # that reaches the client ahead of its `connect` event, where clients can't acknowledge it.
    connect_auth: dict[str, Any] = {}

    async def connected(sid: str, namespace: str) -> None:
        auth = connect_auth.pop(sid, None)
        if auth is not None:
            # As if the client had sent `authenticate` itself: through the server's event
            # dispatch, so the socket metrics and connection analytics (telemetry/sockets.py,
            # which wraps it) see this sign-in as they see any other.
            await sio._trigger_event("authenticate", namespace, sid, auth)

    assert isinstance(sio.manager, PromptRedisManager)
    sio.manager.on_connected = connected

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if auth:  # the connect payload may carry the token: {"token": "..."}
            connect_auth[sid] = auth

    @sio.on("authenticate")
    async def on_authenticate(sid: str, data: Any = None) -> None:
        await authenticate(sid, data)

    async def signed_in(sid: str, data: Any) -> tuple[dict[str, Any], list[int] | None]:
        """The socket's session state and the ids an ack or read names; Refused otherwise."""
        state = await sio.get_session(sid)
        if state.get("userId") is None:
            await reply(sid, "auth:error", NOT_AUTHENTICATED)
            raise Refused(NOT_AUTHENTICATED["message"])
        try:
            return state, parse_ids(data)
        except ValueError as exc:
            raise Refused(str(exc)) from None

    async def still_signed_in(state: dict[str, Any]) -> bool:
        """Whether what the socket authenticated with still holds: a login session until it
        ends (checked in the database), a client token until its `exp`."""
        if state.get("sessionId") is None:
            return bool(state.get("expiresAt", 0) > time.time())
        async with herald.db() as session:
            return await sessions.is_live(session, state["sessionId"])

    async def session_ended(sid: str) -> Refused:
        """The session the socket authenticated with has ended since: say so and let it go.
        Every event checks, as a logout's disconnect may not have reached this server. Raise
        what it returns at once: the answer must leave before the disconnect runs."""
        await reply(sid, "auth:error", SESSION_ENDED)
        sio.start_background_task(sio.disconnect, sid)
        return Refused(SESSION_ENDED["message"])

    def transport_of(sid: str) -> str:
        """What the socket really uses, `polling` or `websocket`; `unknown` once it is gone."""
        try:
            return str(sio.transport(sid))
        except KeyError:
            return "unknown"

    @sio.on("*")
    async def on_unknown(event: str, sid: str, data: Any = None) -> dict[str, Any]:
        return {"error": f"unknown event {event[:64]!r}"}

    @sio.on("notification:ack")
    @answers_errors
    async def on_ack(sid: str, data: Any = None) -> dict[str, Any]:
        transport = transport_of(sid)  # first: a client may ack and close at once
        try:
            state, ids = await signed_in(sid, data)
            if ids is None:
                raise Refused("acknowledge ids, not all")
            session_id = state.get("sessionId")
            if session_id is None and not await still_signed_in(state):
                raise await session_ended(sid)
            # A login session's check is part of the acknowledgement's own query.
            acked = await herald.inbox.acknowledge(state["userId"], session_id, ids, sid, transport)
            if acked is None:
                raise await session_ended(sid)
        except Refused as refused:
            return {"error": str(refused)}
        return {"acked": acked}

    @sio.on("notification:markRead")
    @answers_errors
    async def on_mark_read(sid: str, data: Any = None) -> dict[str, Any]:
        try:
            state, ids = await signed_in(sid, data)
            if not await still_signed_in(state):
                raise await session_ended(sid)
        except Refused as refused:
            return {"error": str(refused)}
        user_id = state["userId"]
        marked = await herald.inbox.mark_read(user_id, ids)
        await announce_read(herald, user_id, marked, everything=ids is None)
        return {"marked": marked}

    @sio.event
    async def ping(sid: str, data: Any = None) -> None:
        await reply(
            sid,
            "pong",
            {"timestamp": int(time.time() * 1000), "serverId": settings.effective_server_id},
        )

    @sio.event
    async def disconnect(sid: str, *_: Any) -> None:
        connect_auth.pop(sid, None)
        expiries.cancel(sid)
        state = await sio.get_session(sid)
        if state.get("userId") is not None:
            await herald.presence.remove(
                state["userId"], sid, session_id=state.get("sessionId"), left=True
            )

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

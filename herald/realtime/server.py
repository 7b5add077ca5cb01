"""The Socket.IO server: authentication, catch-up, acknowledgements, read state, heartbeat.

Every API server shares one Redis-backed manager, so an emit to a user's room or socket from any
process (an API server or a worker) reaches it wherever it is connected. A socket receives
nothing until it authenticates: it joins no room before that.

The handlers are one `socketio.AsyncNamespace` (`Notifications`), built with what they use;
`create_socket_server` makes the server and registers it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import redis.asyncio as aioredis
import socketio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.service import login_for_token
from herald.accounts.sessions import is_live
from herald.core.config import Settings
from herald.core.db import utcnow
from herald.core.deadlines import Deadlines
from herald.core.redis import pubsub_channel
from herald.inbox.service import Inbox, backlog_if_live
from herald.notifications.models import InAppNotification
from herald.notifications.schemas import inapp_event
from herald.realtime import sessions
from herald.realtime.adapter import lean_socket
from herald.realtime.adapter.manager import PromptRedisManager
from herald.realtime.presence import AUTHENTICATED_ROOM, Presence, user_room
from herald.subscribers import service as subscribers
from herald.subscribers import tokens

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


class SocketObserver(Protocol):
    """What the handlers report: each event's outcome and time, and the connection events
    (`connect`, `disconnect`, `reconnect`). Telemetry's metrics are one."""

    def observe_socket_event(self, event: str, ok: bool, seconds: float) -> None: ...

    def observe_connection(self, kind: str) -> None: ...


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


Handler = Callable[[Any, str, Any], Awaitable[dict[str, Any]]]


def answers_errors(handler: Handler) -> Handler:
    """An event whose handler fails still gets an answer: the client's callback is never left
    waiting, and the failure is logged here rather than lost in python-socketio's task."""

    @functools.wraps(handler)
    async def guarded(self: Any, sid: str, data: Any = None) -> dict[str, Any]:
        try:
            return await handler(self, sid, data)
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


def create_socket_server(
    settings: Settings, redis_url: str, handlers: Notifications
) -> socketio.AsyncServer:
    lean_socket.install()  # three tasks less per idle socket (see the module)
    manager = redis_manager(redis_url)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        cors_allowed_origins=accepted_origin(settings.cors_origins),
        ping_interval=settings.ws_heartbeat_interval / 1000,
        ping_timeout=max(settings.ws_heartbeat_interval / 1000, 20),
    )
    sio.register_namespace(handlers)
    manager.on_connected = handlers.connected
    return sio


class Notifications(socketio.AsyncNamespace):
    """The main namespace's events: sign-in (with the connect or as `authenticate`), catch-up,
    `notification:ack`, `notification:markRead`, `ping`, and the disconnect."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[AsyncSession],
        redis: aioredis.Redis,
        presence: Presence,
        inbox: Inbox,
        observer: SocketObserver,
    ) -> None:
        super().__init__("/")
        self.settings = settings
        self.db = db
        self.redis = redis
        self.presence = presence
        self.inbox = inbox
        self.observer = observer
        # Each socket is disconnected when its session expires (revocations disconnect it at
        # once), on one timer for all of them.
        self.expiries: Deadlines[str] = Deadlines(self._disconnect_later)
        # Sockets that sent their token with the connect, until the connection is confirmed:
        # Socket.IO confirms it only after the connect handler returns, and anything emitted
        # before that reaches the client ahead of its `connect` event, where clients can't
        # acknowledge it.
        self.connect_auth: dict[str, Any] = {}
        self.handlers: dict[str, Callable[..., Awaitable[Any]]] = {
            "connect": self.on_connect,
            "disconnect": self.on_disconnect,
            "authenticate": self.on_authenticate,
            "notification:ack": self.on_ack,
            "notification:markRead": self.on_mark_read,
            "ping": self.on_ping,
        }

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Every event of the namespace comes through here (python-socketio's documented hook
        for custom dispatch): event names with a colon can't be method names, an unknown one
        gets an answer, and each is timed for the metrics, labelled by its name only when it
        is one of ours (a client inventing names must not grow the metrics)."""
        handler = self.handlers.get(event)
        begun = time.perf_counter()
        ok = False
        try:
            result = await (handler(*args) if handler else self.on_unknown(event))
            ok = True
            return result
        finally:
            label = event if handler else "other"
            self.observer.observe_socket_event(label, ok, time.perf_counter() - begun)
            if event in ("connect", "disconnect"):
                self.observer.observe_connection(event)

    def _disconnect_later(self, sid: str) -> None:
        self.server.start_background_task(self.disconnect, sid)

    async def reply(self, sid: str, event: str, data: Any) -> None:
        """Emit to a socket of this server, from one of its handlers. Not through Redis: the
        manager's emit also publishes every message for the other servers, who have no such
        socket; that was a PUBLISH per sign-in and per caught-up notification, and every other
        API server's subscriber reading it for nothing."""
        await self.emit(event, data, to=sid, ignore_queue=True)

    async def sign_in(
        self, sid: str, user: Signer, login_id: int | None, expires_at: datetime
    ) -> list[InAppNotification] | None:
        """Join the user's rooms and presence; returns the backlog this socket must be sent.
        `login_id` is the session a session token opened, good until `expires_at`; None for a
        client token (a JWT the application signed), which is bound to no session.

        The backlog is claimed for this connection *before* the socket shows up in presence, so
        no worker can push one of its notifications ahead of the older ones: they arrive in
        order. One created in between finds the user offline and comes on its next attempt.

        None if the session ended while the socket was being bound to it."""
        previous = await self.get_session(sid)
        if previous.get("userId") not in (None, user.id):  # the socket changes hands
            await self.leave_room(sid, user_room(previous["userId"]))
            await self.presence.remove(previous["userId"], sid)
        if previous.get("sessionId") not in (None, login_id):
            await sessions.unbind(self.redis, previous["sessionId"], sid)
        if login_id is not None:
            await sessions.bind(self.redis, login_id, sid, expires_at)
        # Checked again once bound (a logout that committed meanwhile found no socket), in the
        # backlog's own statement: None if the session ended.
        backlog = await backlog_if_live(self.db, user.id, login_id)
        if backlog is None:
            return None
        await self.save_session(
            sid,
            {
                "userId": user.id,
                "username": user.username,
                "sessionId": login_id,
                "expiresAt": expires_at.timestamp(),
            },
        )
        self.expiries.set(sid, (expires_at - utcnow()).total_seconds())
        await self.enter_room(sid, user_room(user.id))
        await self.enter_room(sid, AUTHENTICATED_ROOM)
        fresh = set(await self.presence.claim(sid, [n.id for n in backlog]))
        if await self.presence.add(user.id, sid) and previous.get("userId") != user.id:
            self.observer.observe_connection("reconnect")
        return [n for n in backlog if n.id in fresh]

    async def catch_up(self, sid: str, backlog: list[InAppNotification]) -> None:
        for n in backlog:
            await self.reply(sid, "notification:new", inapp_event(n))
            await self.inbox.record_catch_up(n, sid)

    async def identify(self, token: str) -> tuple[Signer, int | None, datetime]:
        """Who a token is: a client token (a JWT the application signed) or a session token;
        Refused, saying why, for anything else."""
        if tokens.looks_like_jwt(token):
            try:
                claims = tokens.verify(token, self.settings.client_token_secret)
            except tokens.TokenRefused as refused:
                raise Refused(str(refused)) from None
            user = await subscribers.ensure(self.db, claims.subscriber_id)
            return Signer(user.id, user.username, user.external_id), None, claims.expires_at
        found = await login_for_token(self.db, token)
        if found is None:
            raise Refused("invalid or expired session token")
        signer = Signer(found.user_id, found.username, found.external_id)
        return signer, found.session_id, found.expires_at

    async def on_authenticate(self, sid: str, token: Any = None) -> None:
        if isinstance(token, dict):
            token = token.get("token")
        try:
            if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
                raise Refused("invalid or expired session token")
            user, login_id, expires_at = await self.identify(token)
            backlog = await self.sign_in(sid, user, login_id, expires_at)
            if backlog is None:
                raise Refused("invalid or expired session token")
        except Refused as refused:
            await self.reply(sid, "auth:error", {"message": str(refused)})
            return
        await self.reply(
            sid,
            "auth:success",
            {
                "userId": user.id,
                "subscriberId": user.external_id,
                "username": user.username,
                "socketId": sid,
                "serverId": self.settings.effective_server_id,
            },
        )
        await self.catch_up(sid, backlog)
        log.info(
            "realtime.authenticated",
            extra={"userId": user.id, "sid": sid, "caughtUp": len(backlog)},
        )

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if auth:  # the connect payload may carry the token: {"token": "..."}
            self.connect_auth[sid] = auth

    async def connected(self, sid: str, namespace: str) -> None:
        """The client now knows it is connected (realtime.adapter.manager): sign in with the
        token it sent with the connect, as if it had sent `authenticate` itself, through the
        one dispatch, so the metrics see this sign-in as any other."""
        auth = self.connect_auth.pop(sid, None)
        if auth is not None:
            await self.trigger_event("authenticate", sid, auth)

    async def signed_in(self, sid: str, data: Any) -> tuple[dict[str, Any], list[int] | None]:
        """The socket's session state and the ids an ack or read names; Refused otherwise."""
        state = await self.get_session(sid)
        if state.get("userId") is None:
            await self.reply(sid, "auth:error", NOT_AUTHENTICATED)
            raise Refused(NOT_AUTHENTICATED["message"])
        try:
            return state, parse_ids(data)
        except ValueError as exc:
            raise Refused(str(exc)) from None

    async def still_signed_in(self, state: dict[str, Any]) -> bool:
        """Whether what the socket authenticated with still holds: a login session until it
        ends (checked in the database), a client token until its `exp`."""
        if state.get("sessionId") is None:
            return bool(state.get("expiresAt", 0) > time.time())
        async with self.db() as session:
            return await is_live(session, state["sessionId"])

    async def session_ended(self, sid: str) -> Refused:
        """The session the socket authenticated with has ended since: say so and let it go.
        Every event checks, as a logout's disconnect may not have reached this server. Raise
        what it returns at once: the answer must leave before the disconnect runs."""
        await self.reply(sid, "auth:error", SESSION_ENDED)
        self._disconnect_later(sid)
        return Refused(SESSION_ENDED["message"])

    def transport_of(self, sid: str) -> str:
        """What the socket really uses, `polling` or `websocket`; `unknown` once it is gone."""
        try:
            return str(self.server.transport(sid))
        except KeyError:
            return "unknown"

    async def on_unknown(self, event: str) -> dict[str, Any]:
        return {"error": f"unknown event {event[:64]!r}"}

    @answers_errors
    async def on_ack(self, sid: str, data: Any = None) -> dict[str, Any]:
        transport = self.transport_of(sid)  # first: a client may ack and close at once
        try:
            state, ids = await self.signed_in(sid, data)
            if ids is None:
                raise Refused("acknowledge ids, not all")
            session_id = state.get("sessionId")
            if session_id is None and not await self.still_signed_in(state):
                raise await self.session_ended(sid)
            # A login session's check is part of the acknowledgement's own query.
            acked = await self.inbox.acknowledge(state["userId"], session_id, ids, sid, transport)
            if acked is None:
                raise await self.session_ended(sid)
        except Refused as refused:
            return {"error": str(refused)}
        return {"acked": acked}

    @answers_errors
    async def on_mark_read(self, sid: str, data: Any = None) -> dict[str, Any]:
        try:
            state, ids = await self.signed_in(sid, data)
            if not await self.still_signed_in(state):
                raise await self.session_ended(sid)
        except Refused as refused:
            return {"error": str(refused)}
        user_id = state["userId"]
        read = await self.inbox.mark_read(user_id, ids)
        await self.announce_read(user_id, read.marked, read.unread, everything=ids is None)
        return {"marked": read.marked}

    async def announce_read(
        self, user_id: int, ids: list[int], unread: int, *, everything: bool
    ) -> None:
        """Tell every tab of the user what was marked read, wherever it is connected."""
        await self.server.emit(
            "notifications:markedRead",
            {"ids": ids, "all": everything, "unreadCount": unread},
            room=user_room(user_id),
        )

    async def on_ping(self, sid: str, data: Any = None) -> None:
        await self.reply(
            sid,
            "pong",
            {"timestamp": int(time.time() * 1000), "serverId": self.settings.effective_server_id},
        )

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        self.connect_auth.pop(sid, None)
        self.expiries.cancel(sid)
        state = await self.get_session(sid)
        if state.get("userId") is not None:
            await self.presence.remove(
                state["userId"], sid, session_id=state.get("sessionId"), left=True
            )

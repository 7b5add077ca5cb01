"""Socket.IO handler metrics: how many events each server handles, how long they take, and
the connection analytics: connects, disconnects and reconnections.

python-socketio has no hook around its handlers, so `instrument` wraps the server's
`_trigger_event` (the one method every handler call goes through, connect and disconnect
included). If a future python-socketio renames it, the server runs uninstrumented rather than
failing: the test of socket metrics would say so.

A reconnection is an authenticated user who signs in on a socket again within
`HERALD_RECONNECT_WINDOW` seconds of one of theirs disconnecting, on whichever server: each
disconnect of a signed-in socket leaves a short-lived mark in Redis that the next sign-in takes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis.asyncio as aioredis
import socketio

from herald.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Events with their own label; anything else a client sends is counted as "other", so a client
# cannot grow the metrics without bound by inventing event names.
KNOWN_EVENTS = frozenset(
    {"connect", "disconnect", "authenticate", "notification:ack", "notification:markRead", "ping"}
)


SIGN_IN_EVENTS = frozenset({"connect", "authenticate"})


def _left(user_id: int) -> str:
    return f"herald:telemetry:left:{user_id}"


class Connections:
    """Counts connects and disconnects of the main namespace, and tells reconnections apart."""

    def __init__(
        self, sio: socketio.AsyncServer, metrics: Metrics, redis: aioredis.Redis, window: float
    ) -> None:
        self.sio, self.metrics, self.redis = sio, metrics, redis
        self.window_ms = int(window * 1000)

    async def user_of(self, sid: str) -> int | None:
        try:
            session = await self.sio.get_session(sid)
        except KeyError:  # the socket is already gone
            return None
        user: int | None = session.get("userId") if session else None
        return user

    async def before(self, event: str, sid: str) -> int | None:
        return await self.user_of(sid) if event in SIGN_IN_EVENTS or event == "disconnect" else None

    async def after(self, event: str, sid: str, user_before: int | None) -> None:
        try:
            if event == "connect":
                self.metrics.observe_connection("connect")
            if event == "disconnect":
                self.metrics.observe_connection("disconnect")
                if user_before is not None:
                    await self.redis.set(_left(user_before), "1", px=self.window_ms)
            elif event in SIGN_IN_EVENTS:
                user = await self.user_of(sid)
                if (
                    user is not None
                    and user != user_before
                    and await self.redis.getdel(_left(user))
                ):
                    self.metrics.observe_connection("reconnect")
        except Exception as exc:  # Redis away: analytics must never break a connection
            log.warning("telemetry.sockets.connections.error", extra={"error": repr(exc)})


def instrument(
    sio: socketio.AsyncServer, metrics: Metrics, redis: aioredis.Redis, reconnect_window: float
) -> None:
    original = getattr(sio, "_trigger_event", None)
    if original is None:
        log.warning("telemetry.sockets.uninstrumented")
        return
    connections = Connections(sio, metrics, redis, reconnect_window)

    async def timed(event: str, namespace: str, *args: Any) -> Any:
        main = not namespace or namespace == "/"
        sid = args[0] if args and isinstance(args[0], str) else None
        user_before = await connections.before(event, sid) if main and sid else None
        begun = time.perf_counter()
        ok = False
        try:
            result = await original(event, namespace, *args)
            ok = True
            return result
        finally:
            label = event if event in KNOWN_EVENTS else "other"
            if not main:
                label = f"{namespace}:{label}"
            metrics.observe_socket_event(label, ok, time.perf_counter() - begun)
            if main and sid:
                await connections.after(event, sid, user_before)

    sio._trigger_event = timed
    metrics.count_connections(lambda: len(sio.eio.sockets))

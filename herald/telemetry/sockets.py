"""Socket.IO handler metrics: how many events each server handles, how long they take, and
the connects and disconnects.

python-socketio has no hook around its handlers, so `instrument` wraps the server's
`_trigger_event` (the one method every handler call goes through, connect and disconnect
included). If a future python-socketio renames it, the server runs uninstrumented rather than
failing: the test of socket metrics would say so.

Reconnections (a user who signs in again within `HERALD_RECONNECT_WINDOW` seconds of a socket
of theirs disconnecting, on whichever server) are told apart by presence, in the round trips
that add and remove a socket (herald/realtime/presence.py), and counted by the sign-in.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio

from herald.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# Events with their own label; anything else a client sends is counted as "other", so a client
# cannot grow the metrics without bound by inventing event names.
KNOWN_EVENTS = frozenset(
    {"connect", "disconnect", "authenticate", "notification:ack", "notification:markRead", "ping"}
)
# Connection analytics: these events of the main namespace are counted as such too.
CONNECTION_EVENTS = frozenset({"connect", "disconnect"})


def instrument(sio: socketio.AsyncServer, metrics: Metrics) -> None:
    original = getattr(sio, "_trigger_event", None)
    if original is None:
        log.warning("telemetry.sockets.uninstrumented")
        return

    async def timed(event: str, namespace: str, *args: Any) -> Any:
        main = not namespace or namespace == "/"
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
            if main and event in CONNECTION_EVENTS:
                metrics.observe_connection(event)

    sio._trigger_event = timed
    metrics.count_connections(lambda: len(sio.eio.sockets))

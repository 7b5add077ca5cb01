"""uvicorn with a shutdown that moves Socket.IO clients elsewhere before the process ends.

On SIGTERM uvicorn stops listening, then waits for open connections. A WebSocket is closed
(1012) at once, but an Engine.IO long poll would be held until the graceful timeout cancels it.
So, once the listeners are closed, every Engine.IO session is ended here: its disconnect
handlers run (presence is cleaned up) and a pending long poll is answered at once. The client's
next request finds no session, which clients (the JS and the Python one alike) treat as a
transport error: they reconnect, through the load balancer, to a server that still listens.
An Engine.IO `close` packet would be neater, but some clients read it as "do not reconnect".
"""

from __future__ import annotations

import logging
import socket

import socketio
import uvicorn
from starlette.types import ASGIApp

from herald.core import heap
from herald.core.config import Settings
from herald.realtime.adapter import server as socket_server
from herald.web.websocket import LeanWSProtocol

log = logging.getLogger(__name__)
CLOSE_SOCKETS_TIMEOUT = 3.0
KEEP_ALIVE_SECONDS = 65


def server_config(
    app: ASGIApp, settings: Settings, *, graceful_seconds: int = 10
) -> uvicorn.Config:
    """How every Herald HTTP server runs (`herald serve`, `herald api`, the tests' servers)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
        # wsproto keeps less per connection than uvicorn's default (websockets' sans-I/O
        # implementation): 46.4 vs 50.0 KB per idle authenticated socket in `herald bench
        # sockets` (docs/benchmarks.md, "Sockets", 2026-12-03 second session); its lean
        # version a few KB less again (herald/web/websocket.py).
        ws=LeanWSProtocol,
        # No WebSocket-level pings: Engine.IO pings every socket itself (its heartbeat ends a
        # dead one), so uvicorn's own ping, pong and their two timers per socket would only
        # repeat that work.
        ws_ping_interval=None,
        # Idle keep-alive connections are kept longer than clients keep them in their pools
        # (httpx 5 s, HAProxy's `timeout http-keep-alive` 10 s): with uvicorn's default of 5 s
        # the server could close a connection just as a client sent its next request on it,
        # and the client saw a ReadError for a request the server never read.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ws_per_message_deflate=settings.ws_compression,
        # X-Forwarded-For/-Proto name the client only when they come from a load balancer the
        # operator named: anyone else could name any address, and dodge the rate limits.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
    )


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, sio: socketio.AsyncServer | None) -> None:
        super().__init__(config)
        self.sio = sio  # its sockets are closed on shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        heap.settle()  # Herald has started (the app's lifespan ran): freeze what it built

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first, so clients reconnect elsewhere
            server.close()
        await self.close_sockets()
        await super().shutdown(sockets)

    async def close_sockets(self) -> None:
        if self.sio is not None and socket_server.socket_count(self.sio):
            count = await socket_server.close_sockets(self.sio, CLOSE_SOCKETS_TIMEOUT)
            log.info("realtime.sockets.closed", extra={"count": count})

"""uvicorn with a shutdown that moves Socket.IO clients elsewhere before the process ends.

On SIGTERM uvicorn stops listening, then waits for open connections. A WebSocket is closed
(1012) at once, but an Engine.IO long poll would be held until the graceful timeout cancels it.
So, once the listeners are closed, every socket gets an Engine.IO `close` packet: clients see a
transport close (not a server-initiated disconnect, which would stop them from reconnecting)
and reconnect, through the load balancer, to a server that still listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from herald.runtime import Herald

log = logging.getLogger(__name__)
CLOSE_SOCKETS_TIMEOUT = 3.0


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, herald: Herald) -> None:
        super().__init__(config)
        self.herald = herald

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first, so clients reconnect elsewhere
            server.close()
        await self.close_sockets()
        await super().shutdown(sockets)

    async def close_sockets(self) -> None:
        sio = self.herald.sio
        if sio is None or not sio.eio.sockets:
            return
        count = len(sio.eio.sockets)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sio.eio.disconnect(), CLOSE_SOCKETS_TIMEOUT)
        log.info("realtime.sockets.closed", extra={"count": count})

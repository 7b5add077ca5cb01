# mypy: disable-error-code="has-type,assignment"
# (python-engineio is untyped: mypy infers its attributes from their first values)
"""python-engineio's sockets, leaner: the same protocol with no asyncio task of their own and
no send queue once a socket has its WebSocket.

python-engineio (4.x) keeps, for every idle WebSocket, besides uvicorn's own task:
- a ping task that sleeps `ping_interval` (`_send_ping`, started by `schedule_ping`),
- a writer task whose `poll` awaits `asyncio.wait_for(queue.get(), ...)`, which on Python 3.11
  wraps the `get` in a task of its own, and the `asyncio.Queue` it takes packets from (four
  64-slot deques, ~3 KB),
- a reader that starts a task per read (`wait_task`) and awaits it with `asyncio.wait_for`.

Each task holds its coroutine frames, a future and a timer. Here:
- the ping is a deadline (`herald.core.deadlines`: one timer for every socket of the server)
  that starts a short-lived task only when a ping is due;
- `send` writes each packet straight to the WebSocket once the socket has one. Packets sent
  before that (the open packet, anything sent while an upgrade from long polling runs) wait in
  the queue as before and are written first, in order; then the queue is dropped. A long-polled
  socket keeps its queue, and `poll` awaits it in place under `asyncio.timeout`;
- the read loop awaits in place, and a deadline per socket (`_read_overdue`, on the same kind
  of shared timer) closes a WebSocket whose read has waited a ping interval and timeout,
  where the library timed each read out.
Same timeouts, same packets, same order. `close` closes the WebSocket itself (the library's
writer task did, when it ran dry). One change in behaviour: when a long-polled client sends its
close packet, its pending poll is answered with a close packet at once, where the library left
it waiting until the poll timed out (a ping interval and timeout later).

A WebSocket's request environ (python-engineio's WSGI-style dict of the ASGI scope and its
headers, ~1.3 KB and more with a browser's headers) is kept for the connection's life by the
library's request handler, which awaits the connection, and by python-socketio's map of
environs, though nothing reads it once the WebSocket is accepted: the origin check and the
Engine.IO connect ran before, and Herald's Socket.IO connect handlers do not look at it.
`LeanWebSocket` empties it when it accepts. (So `sio.get_environ(sid)` is empty for a socket
that opened over a WebSocket: Herald never calls it.)

`install` makes python-engineio build its sockets from `LeanSocket` (its server calls
`async_socket.AsyncSocket(self, sid)`, looked up when a client connects) and its WebSockets
from `LeanWebSocket` (its ASGI driver's `_async` table, which every server consults). The
methods replaced are copies of the library's with those changes only; tests/realtime/test_layer.py
holds a digest of the library's originals and fails when python-engineio changes them, so this
module is checked again then (or dropped, if upstream has done the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from engineio import async_socket, exceptions, packet
from engineio.async_drivers import asgi

from herald.core.deadlines import Deadlines

# The library's methods this module replaces (tests/realtime/test_layer.py checks their source).
REPLACED = (
    "__init__",
    "poll",
    "send",
    "close",
    "schedule_ping",
    "_send_ping",
    "_websocket_handler",
)


class LeanSocket(async_socket.AsyncSocket):
    _queue: asyncio.Queue[Any] | None = None
    _ws: Any = None  # the WebSocket this socket writes to directly, once it has one
    _ws_closed = False
    _waiting_since: float | None = None  # when the current WebSocket read began (None: none)

    def __init__(self, server: Any, sid: str) -> None:
        # BaseSocket's, less the send queue (made on first use: see `queue`).
        self.server = server
        self.sid = sid
        self.last_ping = time.time()
        self.connected = False
        self.upgrading = False
        self.upgraded = False
        self.closing = False
        self.closed = False
        self.session: dict[str, Any] = {}

    @property
    def queue(self) -> asyncio.Queue[Any]:
        """Packets waiting for a long poll, or for an upgrade to finish. A socket that opens
        over a WebSocket writes each packet as it is sent and never needs one."""
        if self._queue is None:
            self._queue = self.server.create_queue()
        return self._queue

    def end_long_poll(self) -> None:
        """Answer a pending long poll at once, with no packets (see `poll`). A socket that
        has no queue has no long poll."""
        if self._queue is not None:
            self._queue.put_nowait(None)

    async def poll(self) -> list[Any]:
        """Wait for packets to send to the client."""
        try:
            async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                packets = [await self.queue.get()]
            self.queue.task_done()
        except (TimeoutError, asyncio.CancelledError):
            raise exceptions.QueueEmpty() from None
        if packets == [None]:
            return []
        while True:
            try:
                pkt = self.queue.get_nowait()
                self.queue.task_done()
                if pkt is None:
                    self.queue.put_nowait(None)
                    break
                packets.append(pkt)
            except asyncio.QueueEmpty:
                break
        return packets

    async def send(self, pkt: packet.Packet) -> None:
        """Send a packet to the client: straight to its WebSocket once it has one, else into
        the queue a long poll (or the end of an upgrade) takes it from."""
        if not await self.check_ping_timeout():
            return
        if self._ws is None:
            await self.queue.put(pkt)
        elif not await self._write(self._ws, pkt):  # the client is gone: end the connection,
            await self._close_ws()  # as the library's writer did
        self.server.logger.info(
            "%s: Sending packet %s data %s",
            self.sid,
            packet.packet_names[pkt.packet_type],
            pkt.data if not isinstance(pkt.data, bytes) else "<binary>",
        )

    @staticmethod
    async def _write(ws: Any, pkt: packet.Packet) -> bool:
        """Write one packet to the WebSocket; False when it could not (the client is gone)."""
        try:
            await ws.send(pkt.encode())
        except Exception:
            return False
        return True

    async def _close_ws(self) -> None:
        if self._ws is not None and not self._ws_closed:
            self._ws_closed = True
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def close(
        self, wait: bool = True, abort: bool = False, reason: str | None = None
    ) -> None:
        """Close the socket connection."""
        if not self.closed and not self.closing:
            self.closing = True
            await self.server._trigger_event(
                "disconnect",
                self.sid,
                reason or self.server.reason.SERVER_DISCONNECT,
                run_async=False,
            )
            if not abort:
                await self.send(packet.Packet(packet.CLOSE))
            elif self._said_goodbye(wait, reason):
                # A long-polled client said goodbye: answer its pending poll with the close now
                # (as Socket.IO's own server does), not when the poll times out, a ping interval
                # and timeout later; a client that waits for it (python-socketio's) took 35 s.
                # (Not on a server's shutdown: a close packet would stop the client from
                # reconnecting elsewhere.)
                self.queue.put_nowait(packet.Packet(packet.CLOSE))
            self.closed = True
            _clocks(self.server).pings.cancel(self)
            if self._ws is not None:
                await self._close_ws()  # the CLOSE packet, if any, is written already
            elif wait and self._queue is not None:
                await self._queue.join()

    def _said_goodbye(self, wait: bool, reason: str | None) -> bool:
        """Whether `close` runs for a long-polled client's own close packet (`receive`'s call)."""
        client_closed = not wait and reason == self.server.reason.CLIENT_DISCONNECT
        return client_closed and self._ws is None and self._queue is not None

    def schedule_ping(self) -> None:
        # only schedule a new ping if the previous ping wait cycle completed
        if self.last_ping:
            self.last_ping = None
            _clocks(self.server).pings.set(self, self.server.ping_interval)

    def _ping_due(self) -> None:
        if not self.closing and not self.closed:
            self.server.start_background_task(self._send_ping)

    async def _send_ping(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            await self.send(packet.Packet(packet.PING))

    async def _websocket_handler(self, ws: Any) -> Any:
        """Engine.IO handler for websocket transport."""

        async def websocket_wait() -> Any:
            data = await ws.wait()
            if data and len(data) > self.server.max_http_buffer_size:
                raise ValueError("packet is too large")
            return data

        if self.connected:
            # the socket was already connected, so this is an upgrade
            self.upgrading = True  # hold packet sends during the upgrade

            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                return None
            decoded_pkt = packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != packet.PING or decoded_pkt.data != "probe":
                self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return None
            await ws.send(packet.Packet(packet.PONG, data="probe").encode())
            await self.queue.put(packet.Packet(packet.NOOP))  # end poll

            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                self.upgrading = False
                return None
            decoded_pkt = packet.Packet(encoded_packet=pkt)
            if decoded_pkt.packet_type != packet.UPGRADE:
                self.upgraded = False
                self.server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                    self.sid,
                    pkt,
                )
                self.upgrading = False
                return None
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        # (the library starts a writer task that takes each packet from the queue)
        await self._write_directly(ws)

        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)

        loop = asyncio.get_running_loop()
        reads = _clocks(self.server).reads
        reads.set(self, self.server.ping_interval + self.server.ping_timeout)
        while True:
            p = None
            self._waiting_since = loop.time()
            try:
                # (the library awaits each read under a timeout of its own, in a task of its
                # own; here a deadline per socket looks at how long the current read waits)
                p = await websocket_wait()
            except BaseException:
                break
            self._waiting_since = None
            if p is None:
                # connection closed by client
                break
            pkt = packet.Packet(encoded_packet=p)
            try:
                await self.receive(pkt)
            except exceptions.UnknownPacketError:  # pragma: no cover
                pass
            except exceptions.SocketIsClosedError:  # pragma: no cover
                self.server.logger.info("Receive error -- socket is closed")
                break
            except Exception:  # pragma: no cover
                # if we get an unexpected exception we log the error and exit
                # the connection properly
                self.server.logger.exception("Unknown receive error")

        reads.cancel(self)
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        await self._close_ws()
        return None

    def _read_overdue(self) -> None:
        """The read watchdog. A read that has waited a ping interval and its timeout means
        the client is gone: closing the WebSocket ends the read, as the library's timeout did.
        Otherwise look again when the current read would be overdue."""
        timeout = self.server.ping_interval + self.server.ping_timeout
        since = self._waiting_since
        waited = 0.0 if since is None else asyncio.get_running_loop().time() - since
        if waited < timeout:
            _clocks(self.server).reads.set(self, timeout - waited)
        else:
            self.server.start_background_task(self._close_ws)

    async def _write_directly(self, ws: Any) -> None:
        """Send what waits in the queue (sends held while an upgrade ran), then have `send`
        write each packet to the WebSocket itself."""
        queue = self._queue
        while queue is not None and not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            # None is the end of the connection (as in `poll`); a failed write, the client gone.
            if pkt is None or not await self._write(ws, pkt):
                self._ws = ws
                await self._close_ws()
                return
        # No await since the queue was seen empty: nothing can slip in between. The queue (it
        # held at least the open packet, sent before the WebSocket was handed over) goes too.
        self._ws, self._queue = ws, None


class _Clocks:
    """Every socket's next ping and read deadline, for one server: two timers in all, where a
    timer per socket would cost each idle socket ~0.6 KB (herald/core/deadlines.py)."""

    def __init__(self) -> None:
        self.pings: Deadlines[LeanSocket] = Deadlines(LeanSocket._ping_due)
        self.reads: Deadlines[LeanSocket] = Deadlines(LeanSocket._read_overdue)


def _clocks(server: Any) -> _Clocks:
    clocks: _Clocks | None = getattr(server, "_herald_clocks", None)
    if clocks is None:
        clocks = server._herald_clocks = _Clocks()
    return clocks


class LeanWebSocket(asgi.WebSocket):
    async def __call__(self, environ: dict[str, Any]) -> str:
        """The library's, emptying the request's environ once it has taken what it uses."""
        self.asgi_receive = environ["asgi.receive"]
        self.asgi_send = environ["asgi.send"]
        environ.clear()  # see the module's docstring
        await self.asgi_send({"type": "websocket.accept"})
        await self.handler(self)
        return ""  # send nothing as response


def install() -> None:
    """Have python-engineio build its sockets from LeanSocket and its WebSockets from
    LeanWebSocket (process-wide, idempotent)."""
    async_socket.AsyncSocket = LeanSocket
    asgi._async["websocket"] = LeanWebSocket

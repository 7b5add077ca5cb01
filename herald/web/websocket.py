"""uvicorn's `wsproto` WebSocket protocol with less kept per idle connection.

uvicorn keeps, for every open WebSocket, an `asyncio.Queue` of the ASGI messages the app has
not read yet and an `asyncio.Event` that says whether the transport takes more writes. Each of
the queue's three deques, and the event's (and the queue's own event's) one, is a 64-slot block
of about 730 bytes: ~3.6 KB per socket for a queue that holds one message at a time and an
event almost nobody waits on. `LeanWSProtocol` swaps both, once the library has built them, for
the few lines below that do what uvicorn asks of them (`put_nowait`, `get` and `empty` from its
one reader; `set`, `clear` and `wait`) and hold a list only while something waits in them.
No library offers these as lighter drop-ins, hence our own. Once the WebSocket is open it also
lets go of wsproto's handshake (an HTTP/1.1 parser and its buffers, ~2 KB).
tests/realtime/test_layer.py fails if uvicorn starts using other methods of any of these.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto import WSConnection


class Mailbox:
    """A FIFO of messages for one reader: `asyncio.Queue`'s put_nowait, get and empty."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.pop(0)
        if not self._items:
            self._items = None
        return item


class Flag:
    """`asyncio.Event`'s set, clear, is_set and wait, keeping a list only while tasks wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class LeanWSProtocol(WSProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Mailbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    async def send(self, message: Any) -> None:
        await super().send(message)
        conn = self.conn
        if message["type"] == "websocket.accept" and isinstance(conn, WSConnection):
            # Open: from here on uvicorn only sends, receives and reads the state, which the
            # `Connection` wsproto made for the open WebSocket does by itself. The handshake
            # that made it, with its HTTP/1.1 parser, need not live on.
            self.conn = conn.connection or conn  # type: ignore[assignment]

"""A real python-socketio client that records every event it receives."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

EVENTS = (
    "auth:success",
    "auth:error",
    "notification:new",
    "notification:broadcast",
    "notifications:markedRead",
    "pong",
)


class RecordingClient:
    """With `ack=True` it acknowledges every notification it receives, as a real client does
    (an in-app attempt counts as delivered only then); by default it leaves that to the test."""

    def __init__(self, *, ack: bool = False) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.ack = ack
        self.events: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in EVENTS}
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        async def record(data: Any = None) -> None:
            await self.events[name].put(data)
            if self.ack and name == "notification:new":
                await self.sio.emit("notification:ack", {"id": data["id"]})

        return record

    async def connect(self, url: str, auth: Any = None) -> None:
        await self.sio.connect(url, transports=["websocket"], auth=auth, wait_timeout=10)

    async def next(self, event: str, timeout: float = 10) -> Any:
        return await asyncio.wait_for(self.events[event].get(), timeout)

    async def authenticate(self, token: str) -> Any:
        await self.sio.emit("authenticate", {"token": token})
        return await self.next("auth:success")

    async def close(self) -> None:
        await self.sio.disconnect()

# mypy: disable-error-code="misc"
# (python-socketio is untyped: the mixin's base is `Any` to mypy)
"""python-socketio's room bookkeeping, without scanning every room when a client leaves.

To find the rooms a disconnecting client is in, python-socketio's manager (5.x,
`BaseManager.basic_disconnect`) copies the namespace's map of rooms and looks for the client in
each; every client has a room of its own, so that is a scan of N rooms per client. It also
keeps the clients whose disconnect handlers are running in a list that `is_connected` searches.
N clients dropping at once (a load balancer reloaded, a network blip, a server shutting down)
cost O(N²): measured on the bare manager, 0.25 s of blocked event loop for 2,000 clients, 1.7 s
for 5,000, 7.1 s for 10,000 (docs/benchmarks.md), time in which the server delivers nothing.

`LeanRooms` remembers the rooms each client joins besides its own (one small tuple per client:
Herald's sockets join two) and keeps disconnecting clients in a set, so a disconnect costs the
same with 10 or 100,000 clients. Methods replaced are checked against the library's source by
tests/realtime/test_rooms.py, which fails when python-socketio changes them.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from socketio import base_manager

# The library's methods this mixin replaces (tests/realtime/test_rooms.py checks their source).
REPLACED = (
    "basic_enter_room",
    "basic_leave_room",
    "pre_disconnect",
    "basic_disconnect",
    "get_rooms",
)

Room = Hashable  # a room's name; None is the namespace's room of every client

_Base: Any = base_manager.BaseManager


class LeanRooms(_Base):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # namespace -> client sid -> the rooms it joined besides None and its own
        self.joined: dict[str, dict[str, tuple[Room, ...]]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Room, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if room is not None and room != sid:
            joined = self.joined.setdefault(namespace, {})
            rooms = joined.get(sid, ())
            if room not in rooms:
                joined[sid] = (*rooms, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Room) -> None:
        super().basic_leave_room(sid, namespace, room)
        joined = self.joined.get(namespace, {})
        rooms = joined.get(sid, ())
        if room not in rooms:
            return
        rest = tuple(r for r in rooms if r != room)
        if rest:
            joined[sid] = rest
            return
        del joined[sid]
        if not joined:
            del self.joined[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Room]:
        """The rooms a client is in (its own first), as the library's, without the scan."""
        if sid not in self.rooms.get(namespace, {}).get(sid, ()):
            return []
        return [sid, *self.joined.get(namespace, {}).get(sid, ())]

    def pre_disconnect(self, sid: str, namespace: str) -> str | None:
        self.pending_disconnect.setdefault(namespace, set()).add(sid)
        eio_sid: str | None = self.rooms[namespace][None].get(sid)
        return eio_sid

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in (*self.joined.get(namespace, {}).get(sid, ()), sid, None):
            self.basic_leave_room(sid, namespace, room)  # (a room it is not in: nothing)
        self.callbacks.pop(sid, None)
        connecting = self.pending_connect.get(namespace)
        if connecting is not None and sid in connecting:
            connecting.remove(sid)
            if not connecting:
                del self.pending_connect[namespace]
        leaving = self.pending_disconnect.get(namespace)
        if leaving is not None:
            leaving.discard(sid)
            if not leaving:
                del self.pending_disconnect[namespace]

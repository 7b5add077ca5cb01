"""herald/realtime/adapter/rooms.py: python-socketio's room bookkeeping without the scan per
disconnect. The same rooms as the library's manager after any sequence of joins, leaves and
disconnects; a disconnect that never walks the namespace's rooms; a guard on the library's
source."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from socketio import base_manager

from herald.realtime.adapter import rooms
from tests.fixtures.sources import source_digest


class _Eio:
    def __init__(self) -> None:
        self.ids = itertools.count()

    def generate_id(self) -> str:
        return f"sid{next(self.ids)}"


class _Server:
    def __init__(self) -> None:
        self.eio = _Eio()


class _Lean(rooms.LeanRooms, base_manager.BaseManager):
    pass


def manager(cls: type[Any]) -> Any:
    m = cls()
    m.server = _Server()  # only its id generator is used here
    return m


def state(m: Any, sids: list[str]) -> Any:
    """What a manager's users can observe: every room's members, each client's rooms."""
    members = {
        ns: {room: dict(b) for room, b in by_room.items()} for ns, by_room in m.rooms.items()
    }
    of = {
        (ns, sid): sorted(map(str, m.get_rooms(sid, ns))) for ns in ("/", "/admin") for sid in sids
    }
    connected = {(ns, sid): m.is_connected(sid, ns) for ns in ("/", "/admin") for sid in sids}
    return members, of, connected


@pytest.mark.parametrize("seed", range(5))
def test_the_same_rooms_as_the_librarys_manager_after_any_sequence(seed: int) -> None:
    rng = random.Random(seed)
    library, lean = manager(base_manager.BaseManager), manager(_Lean)
    sids: list[str] = []
    names = ["user:1", "user:2", "authenticated", 7]
    for step in range(400):
        op = rng.choice(["connect", "join", "join", "leave", "disconnect", "close"])
        ns = rng.choice(["/", "/admin"])
        live = [s for s in sids if library.is_connected(s, ns)]
        if op == "connect" or not live:
            got = {m.connect(f"eio{step}", ns) for m in (library, lean)}
            assert len(got) == 1  # the same generated sid from both
            sids.append(got.pop())
            continue
        sid, room = rng.choice(live), rng.choice(names)
        for m in (library, lean):
            if op == "join":
                m.basic_enter_room(sid, ns, room)
            elif op == "leave":
                m.basic_leave_room(sid, ns, room)
            elif op == "close":
                m.basic_close_room(room, ns)
            else:
                m.pre_disconnect(sid, ns)
                assert not m.is_connected(sid, ns)
                m.basic_disconnect(sid, ns)
        assert state(lean, sids) == state(library, sids), (step, op)
    for sid in sids:  # everyone leaves: nothing is left behind in either
        for m in (library, lean):
            for ns in ("/", "/admin"):
                if m.is_connected(sid, ns):
                    m.pre_disconnect(sid, ns)
                    m.basic_disconnect(sid, ns)
    assert library.rooms == lean.rooms == {}
    assert lean.joined == {} and lean.pending_disconnect == {}


class _NoWalk(dict[Any, Any]):
    """A namespace's rooms that fail the test if anything walks through all of them."""

    def _walked(self, *_: Any) -> Any:
        raise AssertionError("walked every room of the namespace")

    copy = items = keys = values = __iter__ = _walked  # type: ignore[assignment]


def test_a_disconnect_looks_only_at_the_clients_own_rooms() -> None:
    m = manager(_Lean)
    sids = [m.connect(f"eio{i}", "/") for i in range(50)]
    for i, sid in enumerate(sids):
        m.basic_enter_room(sid, "/", f"user:{i % 7}")
        m.basic_enter_room(sid, "/", "authenticated")
    m.rooms["/"] = _NoWalk(m.rooms["/"])
    for sid in sids:
        m.pre_disconnect(sid, "/")
    for sid in sids[:-1]:
        m.basic_disconnect(sid, "/")
        assert m.get_rooms(sid, "/") == []
    assert set(dict.keys(m.rooms["/"])) == {None, sids[-1], "user:0", "authenticated"}


def test_the_replaced_methods_still_match_the_library() -> None:
    """When python-socketio changes a method `LeanRooms` replaces, look at it again."""
    digests = {
        name: source_digest(getattr(base_manager.BaseManager, name)) for name in rooms.REPLACED
    }
    assert digests == {
        "basic_enter_room": "3f509586d2d7f47e",
        "basic_leave_room": "e27f3eea06d1c6a6",
        "pre_disconnect": "18a8d01ed87a9682",
        "basic_disconnect": "2933b50bc4b2ea7b",
        "get_rooms": "56a1017f85af9f91",
    }

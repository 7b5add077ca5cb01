"""Who is connected, from which socket on which server, kept in Redis so every process sees it.

Each API server proves it is alive with a heartbeat key that expires; a socket counts only while
its server's heartbeat lives. When a server dies without saying goodbye, the first live server
to notice sweeps its sockets away, so no user stays "online" through a dead server.

Keys:
  herald:servers                   hash  server id -> JSON (pid, last beat, where it listens)
  herald:server:{id}:alive         string with a TTL, renewed every heartbeat
  herald:server:{id}:sockets       set   "user:sid" of the sockets on that server
  herald:presence:user:{user}      hash  sid -> server id
  herald:sent:{sid}                set   notification ids already sent on that connection,
                                         the newest SENT_LIMIT of them
  herald:left:{user}               string with a TTL: a socket of the user disconnected within
                                         the reconnect window (HERALD_RECONNECT_WINDOW)

The sent set bounds a connection's memory in Redis: it grew by one member per notification for
as long as the socket lived (300 -> 9,900 members in a 5-minute soak). It now keeps the newest
`SENT_LIMIT` ids, which covers what it guards against: catch-up and a worker racing to send the
same notification, a job that runs again (a retry, a stalled job) seconds or minutes later, a
socket that authenticates again with its backlog still unacknowledged (at most 500 of those,
the catch-up limit). An id older than the newest `SENT_LIMIT` counts as not sent: if it ever
comes again, the connection gets it again, so what the limit can cost is a duplicate (which
the client drops by id), never a lost notification.

It is a set of integers that never holds more than 512, so Redis keeps it in its compact
`intset` encoding (2-4 bytes an id, 1-2 KB when full); a sorted set (ZADD + ZREMRANGEBYRANK)
was the obvious tool but takes ~57 KB at 500 members. So a short script does the trimming.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from herald.realtime import sessions

SERVERS = "herald:servers"
SENT_TTL = 48 * 3600
# A whole catch-up (herald.inbox.service.CATCH_UP_LIMIT) fits.
SENT_LIMIT = 500

# Past this many members a set leaves Redis's compact encoding (`set-max-intset-entries`), and
# never goes back: the sent set is trimmed before it would.
SENT_MOST = 512

# `record(key, keep, most, ttl, ids)`: record ids as sent on one connection (the set at `key`).
# When what it holds and what comes would pass `most` ids, only the newest `keep` of them stay
# (trimming to a little below the most means one sort per dozen notifications, not one per
# notification). Returns 1 per id that was not in the set before, else 0.
_RECORD = """
local function record(key, keep, most, ttl, ids)
  local added, incoming, coming = {}, {}, 0
  for _, text in ipairs(ids) do
    local new = incoming[text] == nil and redis.call('SISMEMBER', key, text) == 0
    if new then
      incoming[text] = tonumber(text)
      coming = coming + 1
    end
    added[#added + 1] = new and 1 or 0
  end
  local floor = -math.huge
  local count = redis.call('SCARD', key) + coming
  if count > most then
    local held = redis.call('SMEMBERS', key)
    local all = {}
    for _, id in ipairs(held) do all[#all + 1] = tonumber(id) end
    for _, id in pairs(incoming) do all[#all + 1] = id end
    table.sort(all)
    floor = all[count - keep + 1]
    for _, id in ipairs(held) do
      if tonumber(id) < floor then redis.call('SREM', key, id) end
    end
  end
  for text, id in pairs(incoming) do
    if id >= floor then redis.call('SADD', key, text) end
  end
  redis.call('EXPIRE', key, ttl)
  return added
end
"""

# KEYS[1]: the set; ARGV: keep, most, TTL (s), then the ids.
_RECORD_SENT = (
    _RECORD
    + """
return record(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], {unpack(ARGV, 4)})
"""
)

# Where one notification goes, in one round trip: the user's sockets on live servers, each
# recorded as sent the notification. KEYS[1]: the user's presence hash (sid -> server). ARGV:
# keep, most, TTL, the notification id, "1" to send even where it was sent before, then the
# key name parts of a server's alive key and of a connection's sent set, then a pub/sub channel
# and the emit's message up to its room (realtime.adapter.manager.socket_emit): published to
# each socket it goes to. Returns how many live sockets the user has.
_DELIVER = (
    _RECORD
    + """
local keep, most, ttl, id, resend = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4],
  ARGV[5] == '1'
local entries = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #entries, 2 do
  local sid, server = entries[i], entries[i + 1]
  if redis.call('EXISTS', ARGV[6] .. server .. ARGV[7]) == 1 then
    live = live + 1
    local new = record(ARGV[8] .. sid, keep, most, ttl, {id})[1] == 1
    if new or resend then
      redis.call('PUBLISH', ARGV[9], ARGV[10] .. cjson.encode(sid) .. '}')
    end
  end
end
return live
"""
)


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


# Every authenticated socket joins this room: broadcasts go here, never to anonymous sockets.
AUTHENTICATED_ROOM = "authenticated"


_ALIVE = ("herald:server:", ":alive")


def _alive(server_id: str) -> str:
    return f"{_ALIVE[0]}{server_id}{_ALIVE[1]}"


def _server_sockets(server_id: str) -> str:
    return f"herald:server:{server_id}:sockets"


def _user(user_id: int) -> str:
    return f"herald:presence:user:{user_id}"


_SENT = "herald:sent:"


def _sent(sid: str) -> str:
    return f"{_SENT}{sid}"


def _left(user_id: int) -> str:
    return f"herald:left:{user_id}"


def _legacy_seen(sid: str) -> str:
    # The unbounded set of Herald versions before the sent set; deleted with the connection.
    return f"herald:seen:{sid}"


@dataclass
class ServerPresence:
    server_id: str
    alive: bool
    sockets: int
    users: int


class Presence:
    def __init__(
        self,
        redis: aioredis.Redis,
        server_id: str,
        ttl_seconds: float = 15.0,
        announce: dict[str, Any] | None = None,
        reconnect_window: float = 60.0,
    ):
        self.redis = redis
        self.server_id = server_id
        self.ttl_ms = int(ttl_seconds * 1000)
        self.reconnect_window_ms = int(reconnect_window * 1000)
        self._record = redis.register_script(_RECORD_SENT)
        self._deliver = redis.register_script(_DELIVER)
        # Where this server listens ({host, port, hostname}), so `herald status` finds the
        # servers that actually run instead of assuming a topology.
        self.announce = announce or {}

    # --- sockets ------------------------------------------------------------------------
    # A socket's own entries, written and removed in one round trip each. No MULTI/EXEC (two
    # commands more per connect and disconnect): readers take each key on its own anyway.
    async def add(self, user_id: int, sid: str) -> bool:
        """Record the socket as the user's; whether this is a reconnection (a socket of the
        user disconnected within the reconnect window), in the same round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(_user(user_id), sid, self.server_id)
            pipe.sadd(_server_sockets(self.server_id), f"{user_id}:{sid}")
            pipe.getdel(_left(user_id))
            *_, left = await pipe.execute()
        return left is not None

    async def remove(
        self, user_id: int, sid: str, *, session_id: int | None = None, left: bool = False
    ) -> None:
        """Forget the socket; also unbind it from its login session, and mark that the user
        `left` (the socket disconnected) for the next sign-in to see, in the same round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hdel(_user(user_id), sid)
            pipe.srem(_server_sockets(self.server_id), f"{user_id}:{sid}")
            pipe.delete(_sent(sid), _legacy_seen(sid))
            if session_id is not None:
                sessions.unbind_on(pipe, session_id, sid)
            if left:
                pipe.set(_left(user_id), "1", px=self.reconnect_window_ms)
            await pipe.execute()

    async def sockets(self, user_id: int) -> list[str]:
        """The user's sockets on servers that are alive."""
        entries = cast(dict[str, str], await self.redis.hgetall(_user(user_id)))
        if not entries:
            return []
        servers = sorted(set(entries.values()))
        alive = dict(zip(servers, await self.redis.mget([_alive(s) for s in servers]), strict=True))
        return [sid for sid, server in entries.items() if alive[server] is not None]

    async def deliver(
        self, user_id: int, notification_id: int, emit: tuple[str, str], *, resend: bool = False
    ) -> int:
        """Send a notification to the user's sockets on live servers, in one round trip: each
        socket is recorded as sent it and `emit` (a pub/sub channel and a message up to its
        room: realtime.adapter.manager.socket_emit) is published to it, in one step; a socket it was
        sent to before (catch-up or an earlier attempt) is left out, unless `resend`. Returns
        how many live sockets the user has."""
        args: list[str | int] = [SENT_LIMIT, SENT_MOST, SENT_TTL, notification_id, int(resend)]
        args += [*_ALIVE, _SENT, *emit]
        return int(await self._deliver(keys=[_user(user_id)], args=args))

    async def claim(self, sid: str, notification_ids: list[int]) -> list[int]:
        """Record all these as sent on this connection at once, before sending any, so a worker
        cannot slip one of them in out of order; returns those not sent before."""
        if not notification_ids:
            return []
        added = await self._record_sent(sid, notification_ids)
        return [i for i, new in zip(notification_ids, added, strict=True) if new]

    async def _record_sent(self, sid: str, notification_ids: list[int]) -> list[bool]:
        """Add the ids to the connection's sent set in one step (so two processes cannot both
        see an id as new), keeping at least the newest SENT_LIMIT; which ids were new."""
        added = await self._record(
            keys=[_sent(sid)], args=[SENT_LIMIT, SENT_MOST, SENT_TTL, *notification_ids]
        )
        return [bool(a) for a in added]

    # --- servers ------------------------------------------------------------------------
    # (The client decodes responses, so Redis hands back str; the casts tell mypy.)
    async def _server_ids(self) -> list[str]:
        return cast(list[str], await self.redis.hkeys(SERVERS))

    async def _members(self, server_id: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(_server_sockets(server_id)))

    async def heartbeat(self) -> None:
        info = json.dumps({"pid": os.getpid(), "heartbeatAt": time.time(), **self.announce})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_alive(self.server_id), "1", px=self.ttl_ms)
            pipe.hset(SERVERS, self.server_id, info)
            await pipe.execute()

    async def sweep(self) -> int:
        """Forget the sockets of servers whose heartbeat stopped; returns how many."""
        removed = 0
        for server_id in await self._server_ids():
            if server_id != self.server_id and not await self.redis.exists(_alive(server_id)):
                removed += await self._forget_server(server_id)
        return removed

    async def leave(self) -> None:
        """A clean shutdown: this server's sockets are gone now, not after the TTL."""
        await self._forget_server(self.server_id)

    async def _forget_server(self, server_id: str) -> int:
        members = await self._members(server_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            for member in members:
                user_id, _, sid = member.partition(":")
                pipe.hdel(_user(int(user_id)), sid)
                pipe.delete(_sent(sid), _legacy_seen(sid))
            pipe.delete(_server_sockets(server_id), _alive(server_id))
            pipe.hdel(SERVERS, server_id)
            await pipe.execute()
        return len(members)

    async def announced(self) -> dict[str, dict[str, Any]]:
        """Every server that has beaten: id -> its last announcement, with `alive` (its
        heartbeat still lives). A dead one stays here until a live server sweeps it."""
        raw = cast(dict[str, str], await self.redis.hgetall(SERVERS))
        ids = sorted(raw)
        alive = await self.redis.mget([_alive(s) for s in ids]) if ids else []
        return {
            server_id: {**json.loads(raw[server_id]), "alive": beat is not None}
            for server_id, beat in zip(ids, alive, strict=True)
        }

    async def servers(self) -> list[ServerPresence]:
        result = []
        for server_id in sorted(await self._server_ids()):
            members = await self._members(server_id)
            result.append(
                ServerPresence(
                    server_id=server_id,
                    alive=bool(await self.redis.exists(_alive(server_id))),
                    sockets=len(members),
                    users=len({m.partition(":")[0] for m in members}),
                )
            )
        return result

    async def online_users(self) -> dict[int, list[tuple[str, str]]]:
        """user id -> [(sid, server id)] over live servers."""
        users: dict[int, list[tuple[str, str]]] = {}
        for server in await self.servers():
            if not server.alive:
                continue
            for member in await self._members(server.server_id):
                user_id, _, sid = member.partition(":")
                users.setdefault(int(user_id), []).append((sid, server.server_id))
        return users

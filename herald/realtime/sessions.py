"""Sockets bound to the session they authenticated with.

A socket is worth no more than its session token: when the session ends (logout, logout
everywhere, a password reset, expiry) its sockets must stop receiving and acting for the user.
Each authenticated socket is recorded under its session in Redis, so whichever API server ends
the session finds every socket of it; `AsyncServer.disconnect` reaches a socket held by another
server through the Socket.IO manager's Redis channel, the one emits already travel on.

Keys:
  herald:session:{id}:sockets   set   sids authenticated with that session (expires with it)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from herald.core.db import utcnow

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    import socketio
    from redis.asyncio.client import Pipeline

    from herald.realtime.presence import Presence

log = logging.getLogger(__name__)

# The set outlives its session a little, so a revocation racing the expiry still finds it.
_GRACE_SECONDS = 3600


def _sockets(session_id: int) -> str:
    return f"herald:session:{session_id}:sockets"


async def bind(redis: aioredis.Redis, session_id: int, sid: str, expires_at: datetime) -> None:
    ttl = max(1, int((expires_at - utcnow()).total_seconds()) + _GRACE_SECONDS)
    # One round trip; no MULTI/EXEC (two more commands): each command is idempotent, and a
    # set left without its TTL by a crash between the two is renewed by the next bind.
    async with redis.pipeline(transaction=False) as pipe:
        pipe.sadd(_sockets(session_id), sid)
        pipe.expire(_sockets(session_id), ttl)
        await pipe.execute()


async def unbind(redis: aioredis.Redis, session_id: int, sid: str) -> None:
    await redis.srem(_sockets(session_id), sid)


def unbind_on(pipe: Pipeline, session_id: int, sid: str) -> None:
    """`unbind`, as one command of a pipeline that does more for the same socket."""
    pipe.srem(_sockets(session_id), sid)


@dataclass(eq=False)
class Disconnector:
    """Ends sockets on whichever server holds them: `AsyncServer.disconnect` reaches a socket
    of another server through the Socket.IO manager's Redis channel. Without a Socket.IO server
    (a worker-only process) it finds the sockets and forgets their sessions' sets, and ends
    none."""

    redis: aioredis.Redis
    sio: socketio.AsyncServer | None
    presence: Presence

    async def sessions(self, session_ids: Iterable[int]) -> int:
        """Every socket of these (ended) sessions."""
        disconnected = 0
        for session_id in session_ids:
            try:
                sids = cast(set[str], await self.redis.smembers(_sockets(session_id)))
                await self.redis.delete(_sockets(session_id))
            except Exception as exc:  # Redis away: each socket's next event re-checks the session
                log.warning("realtime.session.unreachable", extra={"error": repr(exc)})
                continue
            disconnected += await self._end(sids)
        if disconnected:
            log.info("realtime.session.disconnected", extra={"sockets": disconnected})
        return disconnected

    async def user(self, user_id: int) -> int:
        """Every socket of the user on a live server, whatever it authenticated with (a client
        token opens sockets without a session)."""
        return await self._end(await self.presence.sockets(user_id))

    async def _end(self, sids: Iterable[str]) -> int:
        if self.sio is None:
            return 0
        ended = 0
        for sid in sids:
            await self.sio.disconnect(sid)
            ended += 1
        return ended

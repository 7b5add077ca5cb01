"""Who is connected, from which socket on which server, kept in Redis so every process sees it."""

from __future__ import annotations

import redis.asyncio as aioredis


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class Presence:
    def __init__(self, redis: aioredis.Redis, server_id: str):
        self.redis = redis
        self.server_id = server_id

    @staticmethod
    def _key(user_id: int) -> str:
        return f"herald:presence:user:{user_id}"

    async def add(self, user_id: int, sid: str) -> None:
        await self.redis.hset(self._key(user_id), sid, self.server_id)

    async def remove(self, user_id: int, sid: str) -> None:
        await self.redis.hdel(self._key(user_id), sid)

    async def sockets(self, user_id: int) -> list[str]:
        return [
            s.decode() if isinstance(s, bytes) else s
            for s in await self.redis.hkeys(self._key(user_id))
        ]

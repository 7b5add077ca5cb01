"""Fixed-window rate limits kept in Redis, so every API server counts against one budget."""

from __future__ import annotations

import logging
import math

import redis.asyncio as aioredis

from herald.core.errors import TooManyRequests

log = logging.getLogger(__name__)

# INCR and the first PEXPIRE in one step: a crash between them can't leave a counter that
# never expires (which would lock a client out for good).
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, window_seconds: int) -> None:
        self.redis = redis
        self.window_seconds = window_seconds
        self._hit = redis.register_script(_HIT)

    async def hit(self, bucket: str, client: str, limit: int) -> None:
        """Count one request; raise TooManyRequests (429 + Retry-After) past `limit`."""
        if limit <= 0:
            return
        counted = await self.count(bucket, client, self.window_seconds)
        if counted is not None and counted[0] > limit:
            _refuse(bucket, counted[1])

    async def count(self, bucket: str, client: str, window_seconds: int) -> tuple[int, int] | None:
        """Count one event in a window of its own; returns (count, ms left), None if Redis is
        away (then nothing is limited rather than everything refused)."""
        try:
            count, ttl_ms = await self._hit(
                keys=[_key(bucket, client)], args=[window_seconds * 1000]
            )
        except Exception as exc:
            log.warning("ratelimit.unavailable", extra={"bucket": bucket, "error": repr(exc)})
            return None
        return int(count), int(ttl_ms)

    async def check(self, bucket: str, client: str, limit: int) -> None:
        """Raise TooManyRequests if `limit` hits are already counted; counts nothing itself
        (for limits on failures, which are counted with `hit` once they happen)."""
        if limit <= 0:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(_key(bucket, client))
                pipe.pttl(_key(bucket, client))
                count, ttl_ms = await pipe.execute()
        except Exception as exc:
            log.warning("ratelimit.unavailable", extra={"bucket": bucket, "error": repr(exc)})
            return
        if count is not None and int(count) >= limit:
            _refuse(bucket, int(ttl_ms))


def _key(bucket: str, client: str) -> str:
    return f"herald:ratelimit:{bucket}:{client}"


def _refuse(bucket: str, ttl_ms: int) -> None:
    retry_after = max(1, math.ceil(ttl_ms / 1000)) if ttl_ms > 0 else 1
    log.info("ratelimit.exceeded", extra={"bucket": bucket, "retryAfter": retry_after})
    raise TooManyRequests(retry_after)

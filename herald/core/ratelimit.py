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
        self.window_ms = window_seconds * 1000
        self._hit = redis.register_script(_HIT)

    async def hit(self, bucket: str, client: str, limit: int) -> None:
        """Count one request; raise TooManyRequests (429 + Retry-After) past `limit`."""
        if limit <= 0:
            return
        key = f"herald:ratelimit:{bucket}:{client}"
        try:
            count, ttl_ms = await self._hit(keys=[key], args=[self.window_ms])
        except Exception as exc:  # Redis down: let the request through rather than fail it
            log.warning("ratelimit.unavailable", extra={"bucket": bucket, "error": repr(exc)})
            return
        if int(count) > limit:
            retry_after = max(1, math.ceil(int(ttl_ms) / 1000)) if int(ttl_ms) > 0 else 1
            log.info("ratelimit.exceeded", extra={"bucket": bucket, "retryAfter": retry_after})
            raise TooManyRequests(retry_after)

"""Typed dependencies shared by every router: parts of the running Herald, the caller, paging,
limits.

Endpoints declare the one part of the running Herald they use (`app_state`); the composition
root (herald.runtime) builds the parts, and the app (herald.server.app) puts the running Herald
on `app.state`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import redis.asyncio as aioredis
import socketio
from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.core.client import ClientInfo
from herald.core.config import Settings
from herald.core.pagination import MAX_LIMIT, MAX_PAGE, PageParams
from herald.core.ratelimit import RateLimiter


# The dependencies are `async def` even where they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request (profiled on the
# trigger path: thread start-up and hand-off cost more than the dependencies themselves).
async def get_client(request: Request) -> ClientInfo:
    return ClientInfo(
        ip_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        telemetry_id=getattr(request.state, "request_id", None),
    )


def app_state(name: str) -> Any:
    """A dependency on one part of the running Herald the app was built with (its attribute
    `name`). Endpoints declare the one thing they use (`Annotated[Queues,
    app_state("queues")]`), not the whole Herald."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state.herald, name)

    get.__name__ = f"app_state_{name}"
    return Depends(get)


DbDep = Annotated[async_sessionmaker[AsyncSession], app_state("db")]
EngineDep = Annotated[AsyncEngine, app_state("engine")]
RedisDep = Annotated[aioredis.Redis, app_state("redis")]
SettingsDep = Annotated[Settings, app_state("settings")]
SocketServerDep = Annotated[socketio.AsyncServer, app_state("sio")]  # on an API server
ClientDep = Annotated[ClientInfo, Depends(get_client)]

# The caller's credentials are read by the dependencies of the package that owns them:
# herald.apikeys.deps (the admin token, API keys), herald.accounts.deps (session tokens),
# herald.subscribers.deps (client tokens). Each names the one `Authorization: Bearer` header
# differently, so /docs says which token an endpoint takes; auto_error=False everywhere: a
# missing token gets our 401 in our error shape, not FastAPI's 403.


async def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 20,
) -> PageParams:
    return PageParams(page=page, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]


LimiterDep = Annotated[RateLimiter, app_state("rate_limiter")]


def rate_limited(
    bucket: str, limit_of: Callable[[Settings], int]
) -> Callable[..., Awaitable[None]]:
    """A dependency counting the caller's address against `bucket`'s limit."""

    async def check(request: Request, limiter: LimiterDep, settings: SettingsDep) -> None:
        client = request.client.host if request.client else "unknown"
        await limiter.hit(bucket, client, limit_of(settings))

    return check

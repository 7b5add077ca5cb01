"""Typed dependencies shared by every router: parts of the running Herald, the caller, paging,
limits.

Endpoints declare the one part of the running Herald they use (`app_state`); the composition
root (herald.runtime) builds the parts, and the app (herald.web.app) puts it on `app.state`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from herald.accounts.models import Session, User
from herald.accounts.service import Accounts, session_for_token
from herald.apikeys.models import Scope
from herald.apikeys.service import KeyCache, Principal, looks_like_key
from herald.core import dbfaults
from herald.core.client import ClientInfo
from herald.core.config import Settings
from herald.core.errors import Forbidden, Unauthorized
from herald.core.pagination import MAX_LIMIT, MAX_PAGE, PageParams
from herald.core.ratelimit import RateLimiter
from herald.delivery.queues import Queues
from herald.subscribers import service as subscribers
from herald.subscribers import tokens


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
QueuesDep = Annotated[Queues, app_state("queues")]
SettingsDep = Annotated[Settings, app_state("settings")]
AccountsDep = Annotated[Accounts, app_state("accounts")]
KeysDep = Annotated[KeyCache, app_state("api_keys")]
ClientDep = Annotated[ClientInfo, Depends(get_client)]

# Three names for the one `Authorization: Bearer` header, so /docs says which token an endpoint
# takes. auto_error=False: a missing token gets our 401 in our error shape, not FastAPI's 403.
session_bearer = HTTPBearer(
    scheme_name="SessionToken",
    description="A session token from `POST /api/logins` or `POST /api/session`.",
    auto_error=False,
)
admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description=(
        "`HERALD_ADMIN_TOKEN` (every scope), or an API key (`hk_...`, `POST /api/ops/api-keys`) "
        "holding the endpoint's scope: `trigger`, `subscribers`, `read` or `ops`."
    ),
    auto_error=False,
)
client_bearer = HTTPBearer(
    scheme_name="ClientToken",
    description=(
        "A client token: a JWT (HS256, `HERALD_CLIENT_TOKEN_SECRET`) the application's backend "
        "signed with `sub` = the subscriber id and an `exp`; or a session token."
    ),
    auto_error=False,
)
SessionCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(session_bearer)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]
ClientCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(client_bearer)]


def remember(request: Request, principal: Principal) -> None:
    """Note which key made the request: telemetry's `server` stage reads it
    (herald.telemetry.requests), and the notifications it creates carry the key's id."""
    request.state.credential = "admin" if principal.key_id is None else f"key:{principal.key_id}"
    request.state.api_key_id = principal.key_id


async def operator(request: Request, keys: KeyCache, token: str, *scopes: Scope) -> Principal:
    """The admin or the API key `token` is, if it holds one of `scopes`; 401/403 otherwise."""
    principal = await keys.principal(token)
    wanted = " or the ".join(repr(s.value) for s in scopes)
    if principal is None:
        if looks_like_key(token):
            raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
        raise Forbidden(f"this needs the admin token or an API key with the {wanted} scope")
    if not any(principal.allows(scope) for scope in scopes):
        raise Forbidden(
            f"this API key lacks the {wanted} scope",
            {"missingScope": scopes[-1].value},
            code="missing_scope",
        )
    remember(request, principal)
    return principal


def require_scope(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting the admin token and API keys that hold one of `scopes`."""
    wanted = " or the ".join(repr(s.value) for s in scopes)

    async def check(request: Request, credentials: AdminCredentials, keys: KeysDep) -> Principal:
        if credentials is None:
            raise Unauthorized(
                f"an API key with the {wanted} scope or the admin token is required "
                "(Authorization: Bearer <key>)"
            )
        return await operator(request, keys, credentials.credentials, *scopes)

    return check


AdminDep = Depends(require_scope(Scope.OPS))  # everything under /api/ops
ReadDep = Depends(require_scope(Scope.READ))
SubscribersDep = Depends(require_scope(Scope.SUBSCRIBERS))
TriggerKeyDep = Annotated[Principal, Depends(require_scope(Scope.TRIGGER))]


async def session_for(
    db: async_sessionmaker[AsyncSession], token: str
) -> tuple[User, Session] | None:
    # A read: once more on a fresh connection if the first one dropped under it.
    return await dbfaults.read(db, lambda session: session_for_token(session, token))


def client_token_subject(settings: Settings, token: str) -> str:
    """The subscriber id a client token (a JWT the application signed) names; 401 for a token
    that does not verify."""
    secret = settings.client_token_secret
    try:
        claims = tokens.verify(token, secret.get_secret_value() if secret else None)
    except tokens.TokenRefused as refused:
        raise Unauthorized(str(refused), code="invalid_client_token") from None
    return claims.subscriber_id


async def credential_live(
    keys: KeyCache, db: async_sessionmaker[AsyncSession], authorization: bytes
) -> bool:
    """Whether an `Authorization: Bearer` header holds the admin token, a live API key or a
    live session."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    if await keys.principal(token) is not None:
        return True
    return await session_for(db, token) is not None


@dataclass(frozen=True)
class Authenticated:
    user: User
    session: Session


async def current_session(credentials: SessionCredentials, db: DbDep) -> Authenticated:
    if credentials is None:
        raise Unauthorized("session token required (Authorization: Bearer <token>)")
    found = await session_for(db, credentials.credentials)
    if found is None:
        raise Unauthorized("invalid or expired session token", code="invalid_token")
    return Authenticated(*found)


async def current_user(auth: Annotated[Authenticated, Depends(current_session)]) -> User:
    return auth.user


CurrentSessionDep = Annotated[Authenticated, Depends(current_session)]
CurrentUserDep = Annotated[User, Depends(current_user)]


async def current_recipient(
    credentials: ClientCredentials, db: DbDep, settings: SettingsDep
) -> User:
    """The inbox's owner: a subscriber by the client token their application signed, or a
    signed-up user by their session token."""
    if credentials is None:
        raise Unauthorized("a client token or session token is required (Authorization: Bearer)")
    token = credentials.credentials
    if not tokens.looks_like_jwt(token):
        found = await session_for(db, token)
        if found is None:
            raise Unauthorized("invalid or expired session token", code="invalid_token")
        return found[0]
    return await subscribers.ensure(db, client_token_subject(settings, token))


RecipientDep = Annotated[User, Depends(current_recipient)]


@dataclass(frozen=True)
class Caller:
    """Who is asking: a signed-in user, or the operator (the admin token or an API key with
    the endpoint's scope; user None)."""

    user: User | None

    @property
    def is_admin(self) -> bool:
        return self.user is None

    @property
    def user_id(self) -> int | None:
        """The signed-in user's id; None for the admin."""
        return self.user.id if self.user else None

    def may_see(self, user_id: int | None) -> bool:
        return self.user is None or self.user.id == user_id

    def ensure_may_see(self, user_id: int) -> None:
        if not self.may_see(user_id):
            raise Forbidden("you can only see your own data")


def caller_for(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency admitting a signed-in user (for their own data) and the admin token or an
    API key holding `scope` (for anyone's)."""

    async def get_caller(
        request: Request,
        session: SessionCredentials,
        admin: AdminCredentials,
        keys: KeysDep,
        db: DbDep,
    ) -> Caller:
        credentials = session or admin
        if credentials is None:
            raise Unauthorized("a session token, an API key or the admin token is required")
        token = credentials.credentials
        if keys.is_admin(token) or looks_like_key(token):
            await operator(request, keys, token, scope)
            return Caller(None)
        found = await session_for(db, token)
        if found is None:
            raise Unauthorized("invalid or expired token", code="invalid_token")
        return Caller(found[0])

    return get_caller


CallerDep = Annotated[Caller, Depends(caller_for(Scope.READ))]
# The same, for the few endpoints where the operator acts rather than reads.
OperatorCallerDep = Annotated[Caller, Depends(caller_for(Scope.OPS))]


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

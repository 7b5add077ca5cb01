"""Typed dependencies shared by every router: the running Herald, the caller, paging, limits."""

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
from herald.apikeys.service import Principal, looks_like_key
from herald.core import dbfaults
from herald.core.client import ClientInfo
from herald.core.config import Settings
from herald.core.errors import Forbidden, Unauthorized
from herald.core.pagination import MAX_LIMIT, MAX_PAGE, PageParams
from herald.core.ratelimit import RateLimiter
from herald.delivery.queues import Queues
from herald.runtime import Herald
from herald.subscribers import service as subscribers
from herald.subscribers import tokens


# The dependencies are `async def` even where they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request (profiled on the
# trigger path: thread start-up and hand-off cost more than the dependencies themselves).
def _herald(request: Request) -> Herald:
    herald: Herald = request.app.state.herald
    return herald


async def get_herald(request: Request) -> Herald:
    return _herald(request)


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
        return getattr(_herald(request), name)

    get.__name__ = f"app_state_{name}"
    return Depends(get)


HeraldDep = Annotated[Herald, Depends(get_herald)]
DbDep = Annotated[async_sessionmaker[AsyncSession], app_state("db")]
EngineDep = Annotated[AsyncEngine, app_state("engine")]
RedisDep = Annotated[aioredis.Redis, app_state("redis")]
QueuesDep = Annotated[Queues, app_state("queues")]
SettingsDep = Annotated[Settings, app_state("settings")]
AccountsDep = Annotated[Accounts, app_state("accounts")]
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


def _remember(request: Request, principal: Principal) -> None:
    """Note which key made the request: telemetry's `server` stage reads it
    (herald.telemetry.requests), and the notifications it creates carry the key's id."""
    request.state.credential = "admin" if principal.key_id is None else f"key:{principal.key_id}"
    request.state.api_key_id = principal.key_id


async def _principal(request: Request, token: str, scope: Scope) -> Principal:
    """The admin or the API key `token` is, if it holds `scope`; 401/403 otherwise."""
    principal = await _herald(request).api_keys.principal(token)
    if principal is None:
        if looks_like_key(token):
            raise Unauthorized("unknown or revoked API key", code="invalid_api_key")
        raise Forbidden(f"this needs the admin token or an API key with the {scope.value!r} scope")
    if not principal.allows(scope):
        raise Forbidden(
            f"this API key lacks the {scope.value!r} scope",
            {"missingScope": scope.value},
            code="missing_scope",
        )
    _remember(request, principal)
    return principal


def require_scope(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting the admin token and API keys that hold `scope`."""

    async def check(request: Request, credentials: AdminCredentials) -> Principal:
        if credentials is None:
            raise Unauthorized(
                f"an API key with the {scope.value!r} scope or the admin token is required "
                "(Authorization: Bearer <key>)"
            )
        return await _principal(request, credentials.credentials, scope)

    return check


AdminDep = Depends(require_scope(Scope.OPS))  # everything under /api/ops
ReadDep = Depends(require_scope(Scope.READ))
SubscribersDep = Depends(require_scope(Scope.SUBSCRIBERS))
TriggerKeyDep = Annotated[Principal, Depends(require_scope(Scope.TRIGGER))]


async def _session_for(herald: Herald, token: str) -> tuple[User, Session] | None:
    # A read: once more on a fresh connection if the first one dropped under it.
    return await dbfaults.read(herald.db, lambda db: session_for_token(db, token))


async def credential_live(herald: Herald, authorization: bytes) -> bool:
    """Whether an `Authorization: Bearer` header holds the admin token, a live API key or a
    live session."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    if await herald.api_keys.principal(token) is not None:
        return True
    return await _session_for(herald, token) is not None


@dataclass(frozen=True)
class Authenticated:
    user: User
    session: Session


async def current_session(request: Request, credentials: SessionCredentials) -> Authenticated:
    if credentials is None:
        raise Unauthorized("session token required (Authorization: Bearer <token>)")
    found = await _session_for(_herald(request), credentials.credentials)
    if found is None:
        raise Unauthorized("invalid or expired session token", code="invalid_token")
    return Authenticated(*found)


async def current_user(auth: Annotated[Authenticated, Depends(current_session)]) -> User:
    return auth.user


CurrentSessionDep = Annotated[Authenticated, Depends(current_session)]
CurrentUserDep = Annotated[User, Depends(current_user)]


async def current_recipient(request: Request, credentials: ClientCredentials) -> User:
    """The inbox's owner: a subscriber by the client token their application signed, or a
    signed-up user by their session token."""
    if credentials is None:
        raise Unauthorized("a client token or session token is required (Authorization: Bearer)")
    herald = _herald(request)
    token = credentials.credentials
    if not tokens.looks_like_jwt(token):
        found = await _session_for(herald, token)
        if found is None:
            raise Unauthorized("invalid or expired session token", code="invalid_token")
        return found[0]
    secret = herald.settings.client_token_secret
    try:
        claims = tokens.verify(token, secret.get_secret_value() if secret else None)
    except tokens.TokenRefused as refused:
        raise Unauthorized(str(refused), code="invalid_client_token") from None
    return await subscribers.ensure(herald.db, claims.subscriber_id)


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
        request: Request, session: SessionCredentials, admin: AdminCredentials
    ) -> Caller:
        credentials = session or admin
        if credentials is None:
            raise Unauthorized("a session token, an API key or the admin token is required")
        herald = _herald(request)
        token = credentials.credentials
        if herald.api_keys.is_admin(token) or looks_like_key(token):
            await _principal(request, token, scope)
            return Caller(None)
        found = await _session_for(herald, token)
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


def rate_limited(
    bucket: str, limit_of: Callable[[Settings], int]
) -> Callable[[Request], Awaitable[None]]:
    """A dependency counting the caller's address against `bucket`'s limit."""

    async def check(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        client = request.client.host if request.client else "unknown"
        await limiter.hit(bucket, client, limit_of(_herald(request).settings))

    return check

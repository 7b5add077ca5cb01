"""Typed dependencies shared by every router: the running Herald, the caller, paging, limits."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from herald.accounts.models import Session, User
from herald.accounts.service import ClientInfo, session_for_token
from herald.core import dbfaults
from herald.core.errors import Forbidden, Unauthorized
from herald.core.pagination import MAX_LIMIT, MAX_PAGE, PageParams
from herald.core.ratelimit import RateLimiter
from herald.runtime import Herald


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


HeraldDep = Annotated[Herald, Depends(get_herald)]
ClientDep = Annotated[ClientInfo, Depends(get_client)]

# Two names for the one `Authorization: Bearer` header, so /docs says which token an endpoint
# takes. auto_error=False: a missing token gets our 401 in our error shape, not FastAPI's 403.
session_bearer = HTTPBearer(
    scheme_name="SessionToken",
    description="A session token from `POST /api/logins` or `POST /api/session`.",
    auto_error=False,
)
admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description="`HERALD_ADMIN_TOKEN`: operations endpoints and the generic trigger.",
    auto_error=False,
)
SessionCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(session_bearer)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]


def _is_admin(herald: Herald, token: str) -> bool:
    return hmac.compare_digest(token.encode(), herald.admin_token.encode())


async def require_admin(request: Request, credentials: AdminCredentials) -> None:
    if credentials is None:
        raise Unauthorized("admin token required (Authorization: Bearer <HERALD_ADMIN_TOKEN>)")
    if not _is_admin(_herald(request), credentials.credentials):
        raise Forbidden("this needs the admin token")


AdminDep = Depends(require_admin)


async def _session_for(herald: Herald, token: str) -> tuple[User, Session] | None:
    # A read: once more on a fresh connection if the first one dropped under it.
    return await dbfaults.read(herald.db, lambda db: session_for_token(db, token))


async def credential_live(herald: Herald, authorization: bytes) -> bool:
    """Whether an `Authorization: Bearer` header holds the admin token or a live session."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    if _is_admin(herald, token):
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


@dataclass(frozen=True)
class Caller:
    """Who is asking: a signed-in user, or the operator holding the admin token (user None)."""

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


async def get_caller(
    request: Request, session: SessionCredentials, admin: AdminCredentials
) -> Caller:
    credentials = session or admin
    if credentials is None:
        raise Unauthorized("a session token or the admin token is required")
    herald = _herald(request)
    if _is_admin(herald, credentials.credentials):
        return Caller(None)
    found = await _session_for(herald, credentials.credentials)
    if found is None:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    return Caller(found[0])


CallerDep = Annotated[Caller, Depends(get_caller)]


async def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 20,
) -> PageParams:
    return PageParams(page=page, limit=limit)


PageDep = Annotated[PageParams, Depends(page_params)]


def rate_limited(
    bucket: str, limit_of: Callable[[Herald], int]
) -> Callable[[Request], Awaitable[None]]:
    """A dependency counting the caller's address against `bucket`'s limit."""

    async def check(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        client = request.client.host if request.client else "unknown"
        await limiter.hit(bucket, client, limit_of(_herald(request)))

    return check

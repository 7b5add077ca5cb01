"""Who is asking, by session token: the signed-in user, or (for endpoints that also serve the
operator) the admin token or an API key (FastAPI dependencies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import Session, User
from herald.accounts.service import Accounts, session_for_token
from herald.apikeys.deps import AdminCredentials, KeysDep, operator
from herald.apikeys.models import Scope
from herald.apikeys.service import KeyCache, looks_like_key
from herald.core import dbfaults
from herald.core.errors import Forbidden, Unauthorized
from herald.web.deps import DbDep, app_state

# One of the three names of the `Authorization: Bearer` header (herald.web.deps says why).
session_bearer = HTTPBearer(
    scheme_name="SessionToken",
    description="A session token from `POST /api/logins` or `POST /api/session`.",
    auto_error=False,
)
SessionCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(session_bearer)]
AccountsDep = Annotated[Accounts, app_state("accounts")]


async def session_for(
    db: async_sessionmaker[AsyncSession], token: str
) -> tuple[User, Session] | None:
    # A read: once more on a fresh connection if the first one dropped under it.
    return await dbfaults.read(db, lambda session: session_for_token(session, token))


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

"""The inbox's owner: a subscriber by the client token their application signed, or a
signed-up user by their session token (FastAPI dependencies)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from herald.accounts.deps import session_for
from herald.accounts.models import User
from herald.core.config import Settings
from herald.core.errors import Unauthorized
from herald.subscribers import service as subscribers
from herald.subscribers import tokens
from herald.web.deps import DbDep, SettingsDep

# One of the three names of the `Authorization: Bearer` header (herald.web.deps says why).
client_bearer = HTTPBearer(
    scheme_name="ClientToken",
    description=(
        "A client token: a JWT (HS256, `HERALD_CLIENT_TOKEN_SECRET`) the application's backend "
        "signed with `sub` = the subscriber id and an `exp`; or a session token."
    ),
    auto_error=False,
)
ClientCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(client_bearer)]


def client_token_subject(settings: Settings, token: str) -> str:
    """The subscriber id a client token (a JWT the application signed) names; 401 for a token
    that does not verify."""
    try:
        claims = tokens.verify(token, settings.client_token_secret)
    except tokens.TokenRefused as refused:
        raise Unauthorized(str(refused), code="invalid_client_token") from None
    return claims.subscriber_id


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

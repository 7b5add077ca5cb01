"""Signed client tokens: how an application's backend vouches for its user to a browser.

The backend signs a JWT (HS256, with `HERALD_CLIENT_TOKEN_SECRET`) whose `sub` is the user's
external id and whose `exp` is required; the browser hands it to Herald's Socket.IO connection
or inbox endpoints. PyJWT checks it, with the algorithm pinned to HS256 so a token naming any
other algorithm (`none` included, or RS256 meant to confuse a public key with the secret) is
refused before its signature is even looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from pydantic import SecretStr

ALGORITHMS = ["HS256"]
# Clocks of the signing backend and of Herald may differ a little.
LEEWAY_SECONDS = 5
MAX_SUBJECT_LENGTH = 255


class TokenRefused(Exception):
    """A client token that does not authenticate anyone; the message says why."""


@dataclass(frozen=True)
class ClientClaims:
    subscriber_id: str
    expires_at: datetime


def looks_like_jwt(token: str) -> bool:
    """Herald's own tokens (sessions, API keys, the admin token) hold no dots; a JWT has two."""
    return token.count(".") == 2


def verify(token: str, secret: str | SecretStr | None) -> ClientClaims:
    """The claims of a valid client token; TokenRefused for anything else. `secret` is
    HERALD_CLIENT_TOKEN_SECRET as the settings hold it (or its text)."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if not secret:
        raise TokenRefused("client tokens are not enabled: HERALD_CLIENT_TOKEN_SECRET is not set")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("client token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused(f"client token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidAlgorithmError:
        raise TokenRefused("client token must be signed with HS256") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("client token signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"invalid client token: {exc}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise TokenRefused("client token's sub must be a subscriber id (1 to 255 characters)")
    return ClientClaims(subject, datetime.fromtimestamp(claims["exp"], UTC))

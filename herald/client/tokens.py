"""Signing a client token: what an application's backend gives its browser to reach Herald."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt


def sign_client_token(
    secret: str, subscriber_id: str, *, ttl: int = 3600, claims: Mapping[str, Any] | None = None
) -> str:
    """A JWT (HS256) for `subscriber_id`, valid `ttl` seconds, signed with Herald's
    `HERALD_CLIENT_TOKEN_SECRET`: the socket's `auth: {token}` and the inbox calls take it."""
    now = int(time.time())
    payload = {**(claims or {}), "sub": str(subscriber_id), "iat": now, "exp": now + ttl}
    return jwt.encode(payload, secret, algorithm="HS256")

"""Typed dependencies shared by every router."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from herald.accounts.service import ClientInfo
from herald.core.errors import Forbidden, Unauthorized
from herald.runtime import Herald


def get_herald(request: Request) -> Herald:
    herald: Herald = request.app.state.herald
    return herald


def get_client(request: Request) -> ClientInfo:
    return ClientInfo(
        ip_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        telemetry_id=getattr(request.state, "request_id", None),
    )


HeraldDep = Annotated[Herald, Depends(get_herald)]
ClientDep = Annotated[ClientInfo, Depends(get_client)]


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = get_herald(request).admin_token
    scheme, _, supplied = (authorization or "").partition(" ")
    if not supplied or scheme.lower() != "bearer":
        raise Unauthorized("admin token required (Authorization: Bearer <HERALD_ADMIN_TOKEN>)")
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise Forbidden("invalid admin token")


AdminDep = Depends(require_admin)

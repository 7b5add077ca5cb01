"""Who may call the operator's endpoints: the admin token, or an API key holding the
endpoint's scope (FastAPI dependencies)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from herald.apikeys.models import Scope
from herald.apikeys.service import KeyCache, Principal, looks_like_key
from herald.core.errors import Forbidden, Unauthorized
from herald.web.deps import app_state

# One of the three names of the `Authorization: Bearer` header (herald.web.deps says why).
admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description=(
        "`HERALD_ADMIN_TOKEN` (every scope), or an API key (`hk_...`, `POST /api/ops/api-keys`) "
        "holding the endpoint's scope: `trigger`, `subscribers`, `read` or `ops`."
    ),
    auto_error=False,
)
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_bearer)]
KeysDep = Annotated[KeyCache, app_state("api_keys")]


def remember(state: MutableMapping[str, Any], principal: Principal) -> None:
    """Note in the request's state (its ASGI scope's `state`) which key made the request:
    telemetry's `server` stage reads it (herald.telemetry.requests), and the notifications it
    creates carry the key's id."""
    state["credential"] = "admin" if principal.key_id is None else f"key:{principal.key_id}"
    state["api_key_id"] = principal.key_id


def _named(scopes: tuple[Scope, ...]) -> str:
    return " or the ".join(repr(s.value) for s in scopes)


async def operator(request: Request, keys: KeyCache, token: str, *scopes: Scope) -> Principal:
    """The admin or the API key `token` is, if it holds one of `scopes`; 401/403 otherwise."""
    principal = await keys.principal(token)
    wanted = _named(scopes)
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
    remember(request.scope.setdefault("state", {}), principal)
    return principal


def require_scope(*scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting the admin token and API keys that hold one of `scopes`."""
    wanted = _named(scopes)

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

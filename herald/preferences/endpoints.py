"""`/api/subscribers/{subscriberId}/preferences` and `/api/types`.

Preferences are read and written by the application (an API key with the `subscribers` scope,
or the admin token) and by the subscriber themself (the client token their application
signed, or a signed-up user's session token), who reaches only their own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from herald.accounts.deps import session_for
from herald.accounts.models import User
from herald.apikeys.deps import KeysDep, operator, require_scope
from herald.apikeys.models import Scope
from herald.apikeys.service import looks_like_key
from herald.core.errors import Forbidden, Unauthorized
from herald.preferences import service
from herald.preferences.schemas import (
    TYPE_PATTERN,
    PreferencesIn,
    PreferencesOut,
    TypeIn,
    TypeList,
    TypeOut,
)
from herald.preferences.service import TypeRegistry
from herald.subscribers import service as subscribers
from herald.subscribers import tokens
from herald.subscribers.deps import ClientCredentials, client_token_subject
from herald.subscribers.endpoints import ExternalId
from herald.web.deps import DbDep, SettingsDep, app_state
from herald.web.errors import errors

router = APIRouter(tags=["preferences"], responses=errors(401, 403))


async def preference_owner(
    request: Request,
    subscriber_id: ExternalId,
    credentials: ClientCredentials,
    keys: KeysDep,
    db: DbDep,
    settings: SettingsDep,
) -> User:
    """The subscriber whose preferences the caller may read and write: anyone's for the
    application, only their own for a subscriber (403 otherwise)."""
    if credentials is None:
        raise Unauthorized(
            "an API key with the 'subscribers' scope, the admin token, or the subscriber's "
            "client token is required (Authorization: Bearer)"
        )
    token = credentials.credentials
    if keys.is_admin(token) or looks_like_key(token):
        await operator(request, keys, token, Scope.SUBSCRIBERS)
        return await subscribers.get(db, subscriber_id)
    own = _only_own(subscriber_id)
    if tokens.looks_like_jwt(token):
        if client_token_subject(settings, token) != subscriber_id:
            raise own
        return await subscribers.ensure(db, subscriber_id)
    found = await session_for(db, token)
    if found is None:
        raise Unauthorized("invalid or expired token", code="invalid_token")
    if found[0].external_id != subscriber_id:
        raise own
    return found[0]


def _only_own(subscriber_id: str) -> Forbidden:
    return Forbidden(
        f"this token is not subscriber {subscriber_id!r}'s: a subscriber reads and changes only "
        "their own preferences"
    )


OwnerDep = Annotated[User, Depends(preference_owner)]


@router.get("/api/subscribers/{subscriberId}/preferences", responses=errors(404))
async def get_preferences(owner: OwnerDep, db: DbDep) -> PreferencesOut:
    """The subscriber's switches, in the shape PUT takes. A switch not listed is on."""
    assert owner.external_id is not None
    return service.document(owner.external_id, await service.read(db, owner.id))


@router.put("/api/subscribers/{subscriberId}/preferences", responses=errors(404, 422))
async def put_preferences(data: PreferencesIn, owner: OwnerDep, db: DbDep) -> PreferencesOut:
    """Merge: change the switches named (`null` removes one), keep the others. A type given
    as true/false replaces that type's per-channel switches. Critical types are delivered
    whatever these say. Answers every switch afterwards."""
    named, whole = data.switches()
    assert owner.external_id is not None
    switches = await service.change(db, owner.id, named, whole)
    return service.document(owner.external_id, switches)


# --- Notification types --------------------------------------------------------------------
# The admin token, or an API key with the `ops` or the `trigger` scope.
types_router = APIRouter(
    prefix="/api/types",
    tags=["preferences"],
    dependencies=[Depends(require_scope(Scope.OPS, Scope.TRIGGER))],
    responses=errors(401, 403),
)
TypesDep = Annotated[TypeRegistry, app_state("types")]
TypeName = Annotated[str, Path(min_length=1, max_length=32, pattern=TYPE_PATTERN)]


@types_router.get("")
async def list_types(types: TypesDep) -> TypeList:
    """Every declared type, and the ones critical by default (`login`, `reset_password`,
    `signup`)."""
    return TypeList(items=await types.listed())


@types_router.get("/{type}")
async def get_type(type: TypeName, types: TypesDep) -> TypeOut:
    return await types.one(type)


@types_router.put(
    "/{type}", responses={201: {"model": TypeOut, "description": "Declared"}, **errors(422)}
)
async def put_type(type: TypeName, data: TypeIn, types: TypesDep, response: Response) -> TypeOut:
    """Declare a type (201) or change it (200). A critical type is delivered whatever the
    recipient's preferences, and its emails carry no unsubscribe link. Every server sees the
    change within 5 seconds (this one at once)."""
    out, created = await types.declare(type, data.critical)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return out

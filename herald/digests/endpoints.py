"""`/api/types/{type}/digest` (a type's digest rule) and `/api/digests/{id}`.

The rule is the application's to set: an API key with the `ops` or the `trigger` scope (the
key that triggers a type may decide how it is batched), or the admin token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from sqlalchemy import select

from herald.accounts.models import User
from herald.apikeys.deps import ReadDep, require_scope
from herald.apikeys.models import Scope
from herald.core.errors import InvalidField, NotFound
from herald.digests import rules
from herald.digests.models import Digest
from herald.digests.schedule import (
    GROUP_BY,
    format_window,
    parse_daily_at,
    parse_window,
)
from herald.digests.schemas import TYPE_PATTERN, DigestOut, DigestRuleIn, DigestRuleOut
from herald.digests.service import Digests
from herald.notifications.models import EmailNotification
from herald.web.deps import DbDep, app_state
from herald.web.errors import errors

router = APIRouter(prefix="/api", tags=["digests"], responses=errors(401, 403))
DigestsDep = Annotated[Digests, app_state("digests")]

TypeName = Annotated[str, Path(alias="type", min_length=1, max_length=32, pattern=TYPE_PATTERN)]


RuleKeyDep = Depends(require_scope(Scope.OPS, Scope.TRIGGER))


def _rule(kind: str, data: DigestRuleIn) -> rules.Rule:
    """The rule `data` describes; 422 naming the field that is wrong."""
    if (data.window is None) == (data.daily_at is None):
        raise InvalidField("window", "give exactly one of window and dailyAt")
    window = None
    if data.window is not None:
        try:
            window = parse_window(data.window)
        except ValueError as exc:
            raise InvalidField("window", str(exc)) from None
    if data.daily_at is not None:
        try:
            parse_daily_at(data.daily_at)
        except ValueError as exc:
            raise InvalidField("dailyAt", str(exc)) from None
    if data.group_by is not None and not GROUP_BY.fullmatch(data.group_by):
        raise InvalidField("groupBy", 'a key of the trigger\'s data, e.g. "data.projectId"')
    return rules.Rule(kind, window, data.daily_at, data.group_by or None)


def _out(rule: rules.Rule) -> DigestRuleOut:
    window = format_window(rule.window_seconds) if rule.window_seconds else None
    return DigestRuleOut(
        type=rule.type, window=window, daily_at=rule.daily_at, group_by=rule.group_by
    )


@router.put("/types/{type}/digest", dependencies=[RuleKeyDep], responses=errors(422))
async def put_digest_rule(
    kind: TypeName, data: DigestRuleIn, db: DbDep, digests: DigestsDep
) -> DigestRuleOut:
    """Digest this type's emails, per subscriber (and per `groupBy` value): within `window`
    from the first one, or until the next `dailyAt` in the subscriber's time zone; each
    becomes one email. In-app notifications still arrive at once. Takes effect on this server
    at once, on the others within `HERALD_DIGEST_RULES_CACHE` seconds; digests already open
    close as they were opened."""
    rule = await rules.put(db, _rule(kind, data))
    digests.rules.forget()
    return _out(rule)


@router.get("/types/{type}/digest", dependencies=[RuleKeyDep], responses=errors(404))
async def get_digest_rule(kind: TypeName, db: DbDep) -> DigestRuleOut:
    rule = await rules.get(db, kind)
    if rule is None:
        raise NotFound(f"type {kind!r} is not digested")
    return _out(rule)


@router.delete(
    "/types/{type}/digest",
    dependencies=[RuleKeyDep],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(404),
)
async def delete_digest_rule(kind: TypeName, db: DbDep, digests: DigestsDep) -> Response:
    """Stop digesting the type: its emails go out one by one again. Digests already open
    still close and send what they hold."""
    if not await rules.remove(db, kind):
        raise NotFound(f"type {kind!r} is not digested")
    digests.rules.forget()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/digests/{digestId}", dependencies=[ReadDep], responses=errors(404))
async def get_digest(
    digest_id: Annotated[int, Path(alias="digestId", ge=1, le=2**31 - 1)], db: DbDep
) -> DigestOut:
    """One digest: its subscriber, group, window, status, the email that delivered it and
    the notifications it carried (`read` scope)."""
    async with db() as session:
        d = await session.get(Digest, digest_id)
        if d is None:
            raise NotFound(f"no digest {digest_id}")
        subscriber = await session.scalar(select(User.external_id).where(User.id == d.user_id))
        carried = await session.scalars(
            select(EmailNotification.id)
            .where(EmailNotification.digest_id == d.id)
            .order_by(EmailNotification.id)
        )
        return DigestOut(
            id=d.id,
            type=d.type,
            user_id=d.user_id,
            subscriber_id=subscriber,
            group_key=d.group_key,
            status=d.status,
            created_at=d.created_at,
            closes_at=d.closes_at,
            closed_at=d.closed_at,
            email_id=d.email_id,
            carried=list(carried),
        )

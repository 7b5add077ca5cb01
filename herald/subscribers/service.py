"""Subscribers: the people an application notifies, keyed by the application's own ids.

A subscriber is a `users` row with an `external_id` (herald.accounts.models.User), so
everything keyed by a user (in-app rows, rooms, presence, catch-up, the inbox) serves them as it
serves signed-up users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import Login, PasswordReset, Session, User
from herald.core import dbfaults
from herald.core.db import transaction
from herald.core.errors import Conflict, InvalidField, NotFound
from herald.digests.models import Digest
from herald.notifications.models import (
    Channel,
    DeliveryAttempt,
    EmailNotification,
    Escalation,
    InAppNotification,
)
from herald.subscribers.schemas import BulkOut, BulkSubscriber, SubscriberFields, SubscriberOut

EDITABLE = ("email", "name", "locale", "timezone", "data")


def out(user: User) -> SubscriberOut:
    assert user.external_id is not None
    return SubscriberOut(
        subscriber_id=user.external_id,
        email=user.email,
        name=user.name,
        locale=user.locale,
        timezone=user.timezone,
        data=user.data or {},
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _changes(fields: SubscriberFields) -> dict[str, Any]:
    """The fields the request named (a PUT that leaves one out keeps its value)."""
    values = {name: getattr(fields, name) for name in EDITABLE if name in fields.model_fields_set}
    if values.get("email") is not None:
        values["email"] = values["email"].lower()
    if "data" in values and values["data"] is None:
        values["data"] = {}
    return values


async def find(session: AsyncSession, subscriber_id: str) -> User | None:
    return await session.scalar(select(User).where(User.external_id == subscriber_id))


async def get(db: async_sessionmaker[AsyncSession], subscriber_id: str) -> User:
    user = await dbfaults.read(db, lambda session: find(session, subscriber_id))
    if user is None:
        raise NotFound(f"no subscriber {subscriber_id!r}")
    return user


async def _check_emails_free(session: AsyncSession, wanted: dict[str, tuple[str, str]]) -> None:
    """409 naming the field of the first address another user already holds. `wanted` maps
    an address to (the subscriber id that wants it, the request field that asks for it)."""
    if not wanted:
        return
    for email, owner in await session.execute(
        select(User.email, User.external_id).where(User.email.in_(list(wanted)))
    ):
        subscriber_id, field = wanted[str(email)]
        if owner != subscriber_id:
            raise Conflict(f"{email} is the address of another subscriber", field)


def _keep_signed_up_address(user: User, values: dict[str, Any], field: str) -> None:
    """A signed-up user signs in and gets login alerts by email: their address stays."""
    if user.password_hash is not None and "email" in values and values["email"] is None:
        raise InvalidField(field, "a user who signed up with a password keeps an email address")


async def upsert(
    db: async_sessionmaker[AsyncSession], subscriber_id: str, fields: SubscriberFields
) -> tuple[User, bool]:
    """Create or update one subscriber; True when it was created."""
    values = _changes(fields)
    try:
        return await _upsert_once(db, subscriber_id, values)
    except IntegrityError:  # a concurrent PUT created it first (or took the address)
        try:
            return await _upsert_once(db, subscriber_id, values)
        except IntegrityError:
            raise Conflict("a concurrent change took this address", "email") from None


async def _upsert_once(
    db: async_sessionmaker[AsyncSession], subscriber_id: str, values: dict[str, Any]
) -> tuple[User, bool]:
    async with transaction(db) as session:
        if email := values.get("email"):
            await _check_emails_free(session, {email: (subscriber_id, "email")})
        user = await find(session, subscriber_id)
        created = user is None
        if user is None:
            user = User(external_id=subscriber_id, data={})
            session.add(user)
        _keep_signed_up_address(user, values, "email")
        for name, value in values.items():
            setattr(user, name, value)
        await session.flush()
        await session.refresh(user)
    return user, created


async def bulk_upsert(
    db: async_sessionmaker[AsyncSession], items: Sequence[BulkSubscriber]
) -> BulkOut:
    """Create or update up to MAX_BULK subscribers in one transaction (a repeated id: the last
    one wins). All or nothing: a conflict names its item and writes none."""
    latest = {item.subscriber_id: (i, _changes(item)) for i, item in enumerate(items)}
    wanted: dict[str, tuple[str, str]] = {}
    for subscriber_id, (i, values) in latest.items():
        if email := values.get("email"):
            if email in wanted and wanted[email][0] != subscriber_id:
                raise Conflict(f"{email} is given to two subscribers", f"subscribers.{i}.email")
            wanted[email] = (subscriber_id, f"subscribers.{i}.email")
    try:
        async with transaction(db) as session:
            await _check_emails_free(session, wanted)
            existing = {
                u.external_id: u
                for u in await session.scalars(
                    select(User).where(User.external_id.in_(list(latest)))
                )
            }
            for subscriber_id, (_, values) in latest.items():
                user = existing.get(subscriber_id)
                if user is None:
                    user = User(external_id=subscriber_id, data={})
                    session.add(user)
                _keep_signed_up_address(
                    user, values, f"subscribers.{latest[subscriber_id][0]}.email"
                )
                for name, value in values.items():
                    setattr(user, name, value)
    except IntegrityError:  # a concurrent writer created one of them or took an address
        raise Conflict(
            "a concurrent change conflicted with this batch; send it again", "subscribers"
        ) from None
    return BulkOut(created=len(latest) - len(existing), updated=len(existing))


async def page(
    db: async_sessionmaker[AsyncSession], limit: int, after: int
) -> tuple[list[User], int | None]:
    """Up to `limit` subscribers by id after `after`, and the cursor of the next page."""

    async def query(session: AsyncSession) -> list[User]:
        rows = await session.scalars(
            select(User)
            .where(User.external_id.is_not(None), User.id > after)
            .order_by(User.id)
            .limit(limit + 1)
        )
        return list(rows)

    rows = await dbfaults.read(db, query)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


async def ensure(db: async_sessionmaker[AsyncSession], subscriber_id: str) -> User:
    """The subscriber, created bare if unknown: a client token is the application vouching
    for its user, and their inbox fills once the application triggers for them."""
    user = await dbfaults.read(db, lambda session: find(session, subscriber_id))
    if user is not None:
        return user
    try:
        async with transaction(db) as session:
            user = User(external_id=subscriber_id, data={})
            session.add(user)
        return user
    except IntegrityError:  # created meanwhile by another request
        return await get(db, subscriber_id)


async def create_missing(
    db: async_sessionmaker[AsyncSession], wanted: dict[str, tuple[str, str]]
) -> dict[str, User]:
    """Create the trigger's unknown subscribers, each with the address it gave: `wanted` maps
    a subscriber id to (address, the field that gave it). Answers every one of them."""
    by_email = {
        email.lower(): (subscriber_id, field) for subscriber_id, (email, field) in wanted.items()
    }
    try:
        async with transaction(db) as session:
            await _check_emails_free(session, by_email)
            rows = [
                User(external_id=subscriber_id, email=email.lower(), data={})
                for subscriber_id, (email, _) in wanted.items()
            ]
            session.add_all(rows)
        return {u.external_id: u for u in rows if u.external_id is not None}
    except IntegrityError:  # a concurrent trigger created some of them: read them all
        async with db() as session:
            found = await session.scalars(select(User).where(User.external_id.in_(list(wanted))))
            return {u.external_id: u for u in found if u.external_id is not None}


@dataclass
class Removed:
    user_id: int
    session_ids: list[int]
    emails: int
    inapp: int


# A condition on a user id, true while records other users share (their purchases, friend
# requests) refer to them: such a user cannot be removed through the subscribers API.
SharedHistory = Callable[[int], Any]


@dataclass(eq=False)
class Removal:
    """Deletes a subscriber with every notification addressed to them. The checks for records
    other users share come from the packages that own them (herald.runtime hands them in)."""

    db: async_sessionmaker[AsyncSession]
    shared_history: Sequence[SharedHistory]

    async def __call__(self, subscriber_id: str) -> Removed:
        """Delete a subscriber with every notification addressed to them (the inbox, pending
        and sent emails, and their audit trail), their sessions and login records. A signed-up
        user whose purchases or friend requests involve them is refused: those records belong
        to others too."""
        async with transaction(self.db) as session:
            user = await find(session, subscriber_id)
            if user is None:
                raise NotFound(f"no subscriber {subscriber_id!r}")
            uid = user.id
            shared = [check(uid) for check in self.shared_history]
            if shared and await session.scalar(select(or_(*shared))):
                raise Conflict(
                    f"subscriber {subscriber_id!r} has purchases or friend requests, which other "
                    "records refer to; they cannot be deleted through this endpoint"
                )
            session_ids = list(
                await session.scalars(select(Session.id).where(Session.user_id == uid))
            )
            await session.execute(delete(Login).where(Login.user_id == uid))
            await session.execute(delete(PasswordReset).where(PasswordReset.user_id == uid))
            await session.execute(delete(Session).where(Session.user_id == uid))
            emails = await _delete_notifications(session, EmailNotification, uid)
            inapp = await _delete_notifications(session, InAppNotification, uid)
            await session.execute(delete(Digest).where(Digest.user_id == uid))
            await session.delete(user)
        return Removed(uid, session_ids, emails, inapp)


async def _delete_notifications(
    session: AsyncSession, model: type[EmailNotification] | type[InAppNotification], uid: int
) -> int:
    """Delete the user's rows of one channel and their audit trail; how many rows went.
    Subqueries, not id lists, so a subscriber with a long history costs no huge parameter list.
    Their jobs still in Redis find no row and end quietly (herald.delivery.processor)."""
    ids = select(model.id).where(model.user_id == uid).scalar_subquery()
    channel: Channel = model.channel
    for audit in (DeliveryAttempt, Escalation):
        await session.execute(_by_notification(audit, channel, ids))
    result = await session.execute(delete(model).where(model.user_id == uid))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _by_notification(
    audit: type[DeliveryAttempt] | type[Escalation], channel: Channel, ids: Any
) -> Delete:
    return delete(audit).where(audit.channel == channel.value, audit.notification_id.in_(ids))

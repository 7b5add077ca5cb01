"""The generic trigger: any notification, to one or many recipients, on one or both channels."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import EmailStr, Field, model_validator
from sqlalchemy import ARRAY, Integer, Select, any_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import User
from herald.core import dbfaults, driver
from herald.core.client import ClientInfo
from herald.core.config import Settings
from herald.core.errors import InvalidField
from herald.core.group_commit import GroupCall, GroupCommit
from herald.core.schemas import CamelInput, CamelModel, OneLine
from herald.delivery.dispatch import Dispatcher
from herald.digests.service import Digests
from herald.notifications.ladder import job_id
from herald.notifications.models import DeliveryState, EmailNotification, Status
from herald.notifications.service import new_email, new_inapp
from herald.notifications.unsubscribe import Signer
from herald.preferences import skips
from herald.preferences.models import Preference
from herald.preferences.rules import Switches
from herald.preferences.service import TypeRegistry, address_lookup
from herald.subscribers import service as subscribers
from herald.subscribers.schemas import SUBSCRIBER_ID_PATTERN
from herald.templates.builtin import DOMAIN_TYPES, GENERIC
from herald.templates.store import TemplateStore

MAX_RECIPIENTS = 1000


class ChannelName(StrEnum):
    EMAIL = "email"
    INAPP = "inapp"


class Recipient(CamelInput):
    user_id: int | None = Field(None, ge=1, le=2**31 - 1)
    subscriber_id: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=SUBSCRIBER_ID_PATTERN,
        description="the application's own id for the recipient (PUT /api/subscribers/{id})",
    )
    email: EmailStr | None = Field(
        None,
        description="alone: an address without an account; with subscriberId: the address to "
        "create an unknown subscriber with (a known one is emailed here instead of their own)",
    )

    @model_validator(mode="after")
    def _someone(self) -> Recipient:
        if self.user_id is None and self.subscriber_id is None and self.email is None:
            raise ValueError("give userId, subscriberId or email")
        if self.user_id is not None and self.subscriber_id is not None:
            raise ValueError("give userId or subscriberId, not both")
        return self


class TriggerIn(CamelInput):
    recipients: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    type: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[a-z][a-z0-9_.-]*$",
        description="picks the email template (GET /api/templates); a type without one of its own "
        "uses the generic one",
    )
    title: OneLine = Field(min_length=1, max_length=255)
    message: str = Field(min_length=1, max_length=5000)
    channels: list[ChannelName] = Field(default=[ChannelName.INAPP], min_length=1, max_length=2)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    data: dict[str, Any] = Field(default_factory=dict, description="delivered with in-app ones")


class CreatedNotification(CamelModel):
    channel: ChannelName
    notification_id: int
    job_id: str
    status: str
    user_id: int | None
    subscriber_id: str | None = None
    email: str | None


class TriggerOut(CamelModel):
    count: int
    notifications: list[CreatedNotification]


@dataclass(eq=False)
class Trigger:
    """Creates a trigger's notifications, commits them, then queues them (or holds them for
    their digest, or records why they are skipped)."""

    settings: Settings
    db: async_sessionmaker[AsyncSession]
    templates: TemplateStore
    types: TypeRegistry  # which types are critical (never skipped, never digested)
    digests: Digests
    unsubscribe: Signer
    group_commit: GroupCommit
    outbox: skips.Outbox
    dispatcher: Dispatcher
    # Concurrent triggers' userId recipients and plain addresses' opt-outs, each looked up in
    # one query for all of them.
    users: GroupCall[int, Reachable] = field(init=False)
    opt_outs: GroupCall[tuple[str, str], bool] = field(init=False)

    def __post_init__(self) -> None:
        self.users = user_lookup(self.db)
        self.opt_outs = address_lookup(self.db)

    async def __call__(
        self, data: TriggerIn, client: ClientInfo, api_key_id: int | None = None
    ) -> TriggerOut:
        """`api_key_id`: the key whose request this is, kept on every notification it creates."""
        channels = list(dict.fromkeys(data.channels))  # keep order, drop repeats
        users = await _recipients(self.users, data, channels)
        by_subscriber, switches = await _subscribers(self.db, data, channels)
        # Domain types' templates need variables only their own flows provide.
        template = GENERIC if data.type in DOMAIN_TYPES else data.type
        # Preferences cost no query of their own: critical types come from a per-process cache,
        # subscribers' switches with the recipient lookups, plain addresses' opt-outs in one
        # batched query (only for a trigger that emails plain addresses).
        critical = await self.types.is_critical(data.type)
        opted_out = set() if critical else await _opted_out(self.opt_outs, data, channels)
        # A digested type's emails are held for their digest (herald.digests); the rule comes
        # from an in-process cache, so an undigested type costs no query. Critical ones never wait.
        wants_digest = ChannelName.EMAIL in channels and not critical
        digest = await self.digests.rules.get(data.type) if wants_digest else None
        created: list[tuple[DeliveryState, Recipient]] = []
        skipped: list[tuple[DeliveryState, skips.Blocked]] = []
        for recipient in data.recipients:
            user: User | Reachable | None = (
                by_subscriber[recipient.subscriber_id]
                if recipient.subscriber_id is not None
                else users.get(recipient.user_id or 0)
            )
            username = user.username if user else None
            address = recipient.email or (user.email if user else None)
            own = (
                None
                if critical or user is None
                else user.switches
                if isinstance(user, Reachable)
                else switches.get(user.id)
            )
            for channel in channels:
                n: DeliveryState
                if channel is ChannelName.EMAIL and digest is not None and user is not None:
                    assert address is not None  # checked by _recipients / _subscribers
                    n = self.digests.held_email(
                        digest,
                        data.type,
                        to=address,
                        username=username,
                        user_id=user.id,
                        title=data.title,
                        message=data.message,
                        data=data.data,
                        telemetry_id=client.telemetry_id,
                    )
                elif channel is ChannelName.EMAIL:
                    assert address is not None  # checked by _recipients / _subscribers
                    n = new_email(
                        self.settings,
                        data.type,
                        to=address,
                        username=username,
                        user_id=user.id if user else None,
                        telemetry_id=client.telemetry_id,
                        context={"title": data.title, "message": data.message, "data": data.data},
                        templates=self.templates,
                        locale=user.locale if user else None,
                        template=template,
                        unsubscribe_token=None
                        if critical
                        else self.unsubscribe.token(
                            data.type,
                            user.external_id if user else None,
                            address,
                            user.id if user else None,
                        ),
                    )
                else:
                    assert user is not None
                    n = new_inapp(
                        self.settings,
                        data.type,
                        user_id=user.id,
                        username=username,
                        email=user.email,
                        title=data.title,
                        message=data.message,
                        data=data.data,
                        priority=data.priority,
                        telemetry_id=client.telemetry_id,
                    )
                n.api_key_id = api_key_id
                created.append((n, recipient))
                if not critical:
                    plain = user is None and (address or "").lower() in opted_out
                    why = skips.address_blocked(data.type) if plain else None
                    why = why or skips.blocked(own, data.type, channel.value)
                    if why is not None:
                        skips.mark(n, why)
                        skipped.append((n, why))
        await self.group_commit.insert([n for n, _ in created])
        if skipped:
            await self.outbox.record_skips(skipped)
        held = [n for n, _ in created if n.status == Status.HELD]
        waiting = (Status.HELD, Status.SKIPPED)
        await self.dispatcher.dispatch([n for n, _ in created if n.status not in waiting])
        if held:  # after their commit: see self.digests.service
            await self.digests.opened([n for n in held if isinstance(n, EmailNotification)])
        out = [
            CreatedNotification(
                channel=ChannelName(n.channel.value),
                notification_id=n.id,
                job_id=job_id(n.channel, n.id),
                status=n.status,
                user_id=getattr(n, "user_id", None),
                subscriber_id=r.subscriber_id,
                email=getattr(n, "recipient_email", None),
            )
            for n, r in created
        ]
        return TriggerOut(count=len(out), notifications=out)


class Reachable(NamedTuple):
    """What a trigger needs of a `userId` recipient."""

    id: int
    username: str | None
    email: str | None
    locale: str | None = None  # picks the email's template
    external_id: str | None = None
    switches: Switches | None = None  # their preferences; None: none set


_REACHABLE: tuple[Any, ...] = (
    User.id,
    User.username,
    User.email,
    User.locale,
    User.external_id,
    Preference.type,
    Preference.channel,
    Preference.enabled,
)


def _reachable() -> Select[Any]:
    """Users with their preference switches (a LEFT JOIN: a row per switch, one when none)."""
    return select(*_REACHABLE).outerjoin(Preference, Preference.user_id == User.id)


@functools.cache
def _reachable_by_ids() -> Select[Any]:
    """PostgreSQL's lookup, built once: the ids as one array parameter, so the statement is the
    same for any number of them and runs through the driver (herald.core.driver). SQLite has
    no arrays: there the ids go in an IN list."""
    return _reachable().where(User.id == any_(bindparam("ids", type_=ARRAY(Integer))))


def user_lookup(db: async_sessionmaker[AsyncSession]) -> GroupCall[int, Reachable]:
    """`userId` recipients of concurrent triggers looked up in one query (Trigger),
    their preference switches with them (a LEFT JOIN: a row per switch, one when none)."""

    async def fetch(ids: set[int]) -> dict[int, Reachable]:
        if driver.on_postgres(db):
            return _by_id(await driver.read(db, _reachable_by_ids(), {"ids": list(ids)}))

        async def query(session: AsyncSession) -> dict[int, Reachable]:
            return _by_id(await session.execute(_reachable().where(User.id.in_(ids))))

        return await dbfaults.read(db, query)  # once more if it dropped

    # One query at a time: the batches grow, and the CPU per trigger fell ~12 % against two at
    # once (docs/benchmarks.md); the lookup is one short read, so waiting one out costs little.
    return GroupCall(fetch, in_flight=1)


def _by_id(rows: Iterable[Any]) -> dict[int, Reachable]:
    found: dict[int, Reachable] = {}
    for row in rows:
        user = found.get(row.id)
        if user is None:
            user = Reachable(row.id, row.username, row.email, row.locale, row.external_id, {})
            found[row.id] = user
        if row.type is not None:
            user.switches[(row.type, row.channel)] = row.enabled  # type: ignore[index]
    return found


async def _recipients(
    lookup: GroupCall[int, Reachable], data: TriggerIn, channels: list[ChannelName]
) -> dict[int, Reachable]:
    """The recipients' user rows; 422 naming the first recipient that can't be reached."""
    ids = {r.user_id for r in data.recipients if r.user_id is not None}
    users = await lookup.get(ids) if ids else {}
    for i, r in enumerate(data.recipients):
        if r.subscriber_id is not None:
            continue
        if r.user_id is not None and r.user_id not in users:
            raise InvalidField(f"recipients.{i}.userId", f"no user {r.user_id}")
        if ChannelName.INAPP in channels and r.user_id is None:
            raise InvalidField(
                f"recipients.{i}.userId", "in-app notifications need a userId or subscriberId"
            )
        if (
            ChannelName.EMAIL in channels
            and r.email is None
            and users[r.user_id or 0].email is None
        ):
            raise InvalidField(f"recipients.{i}.email", f"user {r.user_id} has no email address")
    return users


async def _opted_out(
    opt_outs: GroupCall[tuple[str, str], bool], data: TriggerIn, channels: list[ChannelName]
) -> set[str]:
    """The trigger's plain addresses (no user, no subscriber) that unsubscribed from its type."""
    if ChannelName.EMAIL not in channels:
        return set()
    plain = {
        (str(r.email).lower(), data.type)
        for r in data.recipients
        if r.email is not None and r.user_id is None and r.subscriber_id is None
    }
    if not plain:
        return set()
    return {email for email, _ in await opt_outs.get(plain)}


async def _subscribers(
    db: async_sessionmaker[AsyncSession], data: TriggerIn, channels: list[ChannelName]
) -> tuple[dict[str, User], dict[int, dict[tuple[str, str], bool]]]:
    """The `subscriberId` recipients' rows and preference switches, in one query (none when
    there are none), creating the unknown ones that come with an email; 422 naming the first
    that can't be reached."""
    wanted = {r.subscriber_id: i for i, r in enumerate(data.recipients) if r.subscriber_id}
    switches: dict[int, dict[tuple[str, str], bool]] = {}
    if not wanted:
        return {}, switches

    async def query(session: AsyncSession) -> dict[str, User]:
        rows = await session.execute(
            select(User, Preference.type, Preference.channel, Preference.enabled)
            .outerjoin(Preference, Preference.user_id == User.id)
            .where(User.external_id.in_(list(wanted)))
        )
        users: dict[str, User] = {}
        for user, kind, channel, enabled in rows:
            if user.external_id is not None:
                users[user.external_id] = user
            if kind is not None:
                switches.setdefault(user.id, {})[(kind, channel)] = enabled
        return users

    found = await dbfaults.read(db, query)
    missing: dict[str, tuple[str, str]] = {}
    for i, r in enumerate(data.recipients):
        if r.subscriber_id is None or r.subscriber_id in found or r.subscriber_id in missing:
            continue
        if r.email is None:
            raise InvalidField(
                f"recipients.{i}.subscriberId",
                f"no subscriber {r.subscriber_id!r} (give an email to create one on the fly)",
            )
        missing[r.subscriber_id] = (str(r.email), f"recipients.{i}.email")
    if missing:
        found |= await subscribers.create_missing(db, missing)
    for i, r in enumerate(data.recipients):
        user = found.get(r.subscriber_id or "")
        if r.subscriber_id is None:
            continue
        if user is None:
            raise InvalidField(f"recipients.{i}.subscriberId", f"no subscriber {r.subscriber_id!r}")
        if ChannelName.EMAIL in channels and r.email is None and user.email is None:
            raise InvalidField(
                f"recipients.{i}.email", f"subscriber {r.subscriber_id!r} has no email address"
            )
    return found, switches

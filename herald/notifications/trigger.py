"""The generic trigger: any notification, to one or many recipients, on one or both channels."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import EmailStr, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from herald.accounts.models import User
from herald.accounts.service import ClientInfo
from herald.core import dbfaults
from herald.core.errors import InvalidField
from herald.core.group_commit import GroupCall
from herald.core.schemas import CamelInput, CamelModel, OneLine
from herald.delivery.queues import job_id
from herald.notifications.models import DeliveryState
from herald.notifications.service import new_email, new_inapp
from herald.subscribers import service as subscribers
from herald.subscribers.schemas import SUBSCRIBER_ID_PATTERN
from herald.templates.builtin import DOMAIN_TYPES, GENERIC

if TYPE_CHECKING:
    from herald.runtime import Herald

MAX_RECIPIENTS = 1000


class ChannelName(StrEnum):
    EMAIL = "email"
    INAPP = "inapp"


class Recipient(CamelInput):
    user_id: int | None = Field(None, ge=1, le=2**31 - 1)
    subscriber_id: str | None = Field(
        None, min_length=1, max_length=255, pattern=SUBSCRIBER_ID_PATTERN,
        description="the application's own id for the recipient (PUT /api/subscribers/{id})",
    )  # fmt: skip
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
        min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_.-]*$",
        description="picks the email template (GET /api/templates); a type without one of its own "
        "uses the generic one",
    )  # fmt: skip
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


async def trigger(
    herald: Herald, data: TriggerIn, client: ClientInfo, api_key_id: int | None = None
) -> TriggerOut:
    """`api_key_id`: the key whose request this is, kept on every notification it creates."""
    channels = list(dict.fromkeys(data.channels))  # keep order, drop repeats
    users = await _recipients(herald, data, channels)
    by_subscriber = await _subscribers(herald, data, channels)
    # Domain types' templates need variables only their own flows provide.
    template = GENERIC if data.type in DOMAIN_TYPES else data.type
    created: list[tuple[DeliveryState, Recipient]] = []
    for recipient in data.recipients:
        user: User | Reachable | None = (
            by_subscriber[recipient.subscriber_id]
            if recipient.subscriber_id is not None
            else users.get(recipient.user_id or 0)
        )
        username = user.username if user else None
        address = recipient.email or (user.email if user else None)
        for channel in channels:
            n: DeliveryState
            if channel is ChannelName.EMAIL:
                assert address is not None  # checked by _recipients / _subscribers
                n = new_email(
                    herald.settings, data.type, to=address, username=username,
                    user_id=user.id if user else None, telemetry_id=client.telemetry_id,
                    context={"title": data.title, "message": data.message, "data": data.data},
                    templates=herald.templates, locale=user.locale if user else None,
                    template=template,
                )  # fmt: skip
            else:
                assert user is not None
                n = new_inapp(
                    herald.settings, data.type, user_id=user.id, username=username,
                    email=user.email, title=data.title, message=data.message,
                    data=data.data, priority=data.priority, telemetry_id=client.telemetry_id,
                )  # fmt: skip
            n.api_key_id = api_key_id
            created.append((n, recipient))
    await herald.group_commit.insert([n for n, _ in created])
    await herald.dispatcher.dispatch([n for n, _ in created])
    out = [
        CreatedNotification(
            channel=ChannelName(n.channel.value), notification_id=n.id,
            job_id=job_id(n.channel, n.id), status=n.status, user_id=getattr(n, "user_id", None),
            subscriber_id=r.subscriber_id, email=getattr(n, "recipient_email", None),
        )
        for n, r in created
    ]  # fmt: skip
    return TriggerOut(count=len(out), notifications=out)


class Reachable(NamedTuple):
    """What a trigger needs of a `userId` recipient."""

    id: int
    username: str | None
    email: str | None
    locale: str | None  # picks the email's template


def user_lookup(db: async_sessionmaker[AsyncSession]) -> GroupCall[int, Reachable]:
    """`userId` recipients of concurrent triggers looked up in one query (herald.runtime)."""

    async def fetch(ids: set[int]) -> dict[int, Reachable]:
        async def query(session: AsyncSession) -> dict[int, Reachable]:
            rows = await session.execute(
                select(User.id, User.username, User.email, User.locale).where(User.id.in_(ids))
            )
            return {row.id: Reachable(row.id, row.username, row.email, row.locale) for row in rows}

        return await dbfaults.read(db, query)  # once more if it dropped

    # One query at a time: the batches grow, and the CPU per trigger fell ~12 % against two at
    # once (docs/benchmarks.md); the lookup is one short read, so waiting one out costs little.
    return GroupCall(fetch, in_flight=1)


async def _recipients(
    herald: Herald, data: TriggerIn, channels: list[ChannelName]
) -> dict[int, Reachable]:
    """The recipients' user rows; 422 naming the first recipient that can't be reached."""
    ids = {r.user_id for r in data.recipients if r.user_id is not None}
    users = await herald.user_lookup.get(ids) if ids else {}
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


async def _subscribers(
    herald: Herald, data: TriggerIn, channels: list[ChannelName]
) -> dict[str, User]:
    """The `subscriberId` recipients' rows, in one query (none when there are none), creating
    the unknown ones that come with an email; 422 naming the first that can't be reached."""
    wanted = {r.subscriber_id: i for i, r in enumerate(data.recipients) if r.subscriber_id}
    if not wanted:
        return {}

    async def query(session: AsyncSession) -> dict[str, User]:
        rows = await session.scalars(select(User).where(User.external_id.in_(list(wanted))))
        return {u.external_id: u for u in rows if u.external_id is not None}

    found = await dbfaults.read(herald.db, query)
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
        found |= await subscribers.create_missing(herald.db, missing)
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
    return found

"""Subscribers on the wire: what an application sends about its users, and what it gets back."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, EmailStr, Field

from herald.core.schemas import CamelInput, CamelModel, OneLine

MAX_BULK = 1000
# Printable ASCII without spaces or "/": UUIDs, numbers, "user_42", "auth0|abc", addresses.
SUBSCRIBER_ID_PATTERN = r"^[!-.0-~]{1,255}$"


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _known_zone(value: str | None) -> str | None:
    # Without a tz database on the machine there is nothing to check against: accept it.
    if value is not None and _zones() and value not in _zones():
        raise ValueError("an IANA time zone such as Europe/Paris")
    return value


SubscriberId = Annotated[str, Field(min_length=1, max_length=255, pattern=SUBSCRIBER_ID_PATTERN)]


class SubscriberFields(CamelInput):
    """What may be set on a subscriber. A field left out of a PUT keeps its value; `null`
    clears it; `data` is replaced whole."""

    email: EmailStr | None = Field(None, max_length=320)
    name: OneLine | None = Field(None, max_length=255)
    locale: str | None = Field(
        None,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$",
        description="a language tag such as en or pt-BR",
    )
    timezone: Annotated[str | None, AfterValidator(_known_zone)] = Field(None, max_length=64)
    data: dict[str, Any] | None = Field(None, description="free-form; replaced whole")


class SubscriberIn(SubscriberFields):
    pass


class BulkSubscriber(SubscriberFields):
    subscriber_id: SubscriberId


class BulkIn(CamelInput):
    subscribers: list[BulkSubscriber] = Field(min_length=1, max_length=MAX_BULK)


class BulkOut(CamelModel):
    created: int
    updated: int


class SubscriberOut(CamelModel):
    subscriber_id: str
    email: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SubscriberList(CamelModel):
    items: list[SubscriberOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: done")


class Deleted(CamelModel):
    deleted: bool
    notifications_removed: int
    emails_removed: int
    inapp_removed: int
